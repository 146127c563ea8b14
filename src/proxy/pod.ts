/**
 * The proxy as a Kubernetes pod (docs/kubernetes.md). The same proxy as in stdin mode, fed differently: its
 * configuration is a file from a Secret only this pod mounts, the DNS answer is the pod's own IP (downward API),
 * and it serves until SIGTERM (pod deletion) instead of until stdin closes. Besides the proxy it runs the canary:
 * a listener on a port the sandbox's NetworkPolicy forbids, which reports every connection it accepts.
 */
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { encodeCanaryLine, PROXY_POD_ENV } from '../protocol/proxy-pod.js';
import { decodeProxyConfig, encodeReadyLine, ProxyWireError, type ProxyConfig } from '../protocol/proxy-wire.js';
import { openProcessLog } from './log/file-sinks.js';
import { proxyOptionsFrom, startProxy, type RunningProxy } from './start.js';

export interface ProxyPodIo {
  env: Readonly<Record<string, string | undefined>>;
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
  /** Aborted by SIGTERM: close the listeners, flush the log, exit 0. */
  signal: AbortSignal;
}

function fail(io: ProxyPodIo, message: string): number {
  io.stderr.write(`airlock-proxy: ${message.replace(/\s+/g, ' ')}\n`);
  return 1;
}

/** Accepts and closes at once: the connection itself is the finding. */
function startCanary(host: string, port: number, io: ProxyPodIo): Promise<net.Server> {
  const server = net.createServer((socket) => {
    io.stdout.write(encodeCanaryLine((socket.remoteAddress ?? 'unknown').replace(/^::ffff:/, '')));
    socket.on('error', () => undefined);
    socket.destroy();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => resolve(server));
  });
}

export async function runProxyPod(io: ProxyPodIo): Promise<number> {
  const file = io.env[PROXY_POD_ENV.configFile];
  const podIp = io.env[PROXY_POD_ENV.podIp];
  const canaryPort = Number(io.env[PROXY_POD_ENV.canaryPort] ?? '');
  if (!file) return fail(io, `${PROXY_POD_ENV.configFile} is not set`);
  if (!Number.isInteger(canaryPort) || canaryPort < 1 || canaryPort > 65535) {
    return fail(io, `${PROXY_POD_ENV.canaryPort} must be a port number`);
  }
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return fail(io, `cannot read the configuration ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return fail(io, `the configuration ${file} is not JSON`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return fail(io, 'the configuration is not an object');
  // The pod's address is only known once the pod runs, after its Secret was written: it comes from the downward
  // API, and the schema then checks it like any other field (a missing one fails closed).
  const withAddress = { ...(raw as Record<string, unknown>), sandboxAddress: podIp };
  let config: ProxyConfig;
  try {
    config = decodeProxyConfig(JSON.stringify(withAddress));
  } catch (err) {
    if (err instanceof ProxyWireError) return fail(io, err.message);
    throw err;
  }
  const log = openProcessLog(config.log ?? {}, io.stdout);
  let proxy: RunningProxy;
  try {
    proxy = await startProxy(proxyOptionsFrom(config, log));
  } catch (err) {
    await log.close();
    return fail(io, `cannot start: ${(err as Error).message}`);
  }
  let canary: net.Server;
  try {
    canary = await startCanary(config.listen.host, canaryPort, io);
  } catch (err) {
    await proxy.close();
    await log.close();
    return fail(io, `cannot start the canary on port ${canaryPort}: ${(err as Error).message}`);
  }
  io.stdout.write(encodeReadyLine(proxy.addresses));
  if (!io.signal.aborted) await new Promise<void>((resolve) => io.signal.addEventListener('abort', () => resolve()));
  await new Promise<void>((resolve) => canary.close(() => resolve()));
  await proxy.close();
  await log.close();
  return 0;
}
