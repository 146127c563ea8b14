/**
 * The proxy as a process the host holds: spawned attached (stdin and stdout are pipes to airlock), handed its
 * configuration as one line on stdin, ready when it prints the ready line, and stopped by closing its stdin — so
 * even a SIGKILLed airlock cannot leave a proxy running. Its stdout carries the event lines of the network log.
 * The wire format is protocol/proxy-wire.ts; this file only drives a process that speaks it.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import {
  decodeProxyLine,
  encodeProxyConfig,
  type EventLine,
  type ProxyAddresses,
  type ProxyConfig,
} from '../../protocol/proxy-wire.js';
import { engineEnvironment, lastLines, mustCallEngine, type Engine } from '../engine/engine.js';
import { SandboxError } from '../errors.js';
import type { ProxyLaunch } from './proxy-args.js';

/**
 * A watchdog for a proxy that is alive but never gets ready (one that exits is reported at once). Natively it is
 * ready within a second; in the cgroup v2 lane's emulated VM on a loaded 2-core machine, a rootless start took
 * more than 20 s, so the bound is generous: it only decides how long a hung proxy keeps a run waiting.
 */
export const READY_TIMEOUT_MS = 60_000;
export const STOP_GRACE_MS = 5_000;

export interface ProxyProcess {
  /** Resolves (never rejects) with why the proxy exited, once it has. */
  readonly exited: Promise<string>;
  /** Sends the configuration and resolves with the bound ports once the proxy reports ready. */
  start(config: ProxyConfig, timeoutMs?: number): Promise<ProxyAddresses>;
  /** Closes stdin, the proxy's signal to stop; kills it if it is still running after the grace period. */
  stop(graceMs?: number): Promise<void>;
}

/** Takes charge of a spawned proxy: its event lines go to `onEvent` from the first line on. */
export function superviseProxy(
  child: ChildProcessWithoutNullStreams,
  onEvent: (line: EventLine) => void,
): ProxyProcess {
  // A proxy that exits early breaks the pipe; the exit is reported through `exited`, not as a crash of airlock.
  child.stdin.on('error', () => undefined);
  let stderrTail = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderrTail = (stderrTail + chunk.toString('utf8')).slice(-4000);
  });
  const exited = new Promise<string>((resolve) => {
    child.on('close', (code, signal) =>
      resolve(`the proxy exited (${signal ?? `code ${code}`})${stderrTail ? `: ${lastLines(stderrTail, 5)}` : ''}`),
    );
    child.on('error', (e) => resolve(`the proxy could not be started: ${e.message}`));
  });

  let onReady: ((addresses: ProxyAddresses) => void) | null = null;
  let readyAddresses: ProxyAddresses | null = null;
  const lines = createInterface({ input: child.stdout, crlfDelay: Infinity });
  lines.on('line', (line) => {
    const decoded = decodeProxyLine(line);
    if (decoded.kind === 'event') onEvent(decoded);
    else if (decoded.kind === 'ready' && readyAddresses === null) {
      readyAddresses = decoded.addresses;
      onReady?.(decoded.addresses);
    }
  });

  return {
    exited,
    start(config, timeoutMs = READY_TIMEOUT_MS) {
      child.stdin.write(encodeProxyConfig(config));
      return new Promise<ProxyAddresses>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new SandboxError(`the proxy did not report ready within ${timeoutMs / 1000}s`)),
          timeoutMs,
        );
        const settle = (addresses: ProxyAddresses) => {
          clearTimeout(timer);
          resolve(addresses);
        };
        if (readyAddresses) settle(readyAddresses);
        else onReady = settle;
        void exited.then((why) => {
          clearTimeout(timer);
          reject(new SandboxError(`the proxy failed to start: ${why}`));
        });
      });
    },
    async stop(graceMs = STOP_GRACE_MS) {
      child.stdin.end();
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), graceMs)));
      const outcome = await Promise.race([exited, grace]);
      clearTimeout(timer);
      if (outcome === 'timeout') child.kill('SIGKILL');
    },
  };
}

/** Runs the launch's preparing engine calls, then spawns the attached one. */
export async function launchProxyContainer(
  engine: Engine,
  launch: ProxyLaunch,
): Promise<ChildProcessWithoutNullStreams> {
  for (const step of launch.prepare) await mustCallEngine(engine, step.args, step.what);
  // Its own process group: a SIGTERM to airlock's group (a cancelled CI job) is airlock's to handle; reaching the
  // proxy's client too would stop the proxy under the running command and read as a sandbox failure. The client
  // still dies with airlock: closing its stdin stops it.
  return spawn(engine.binary, launch.attach, { env: engineEnvironment(undefined), stdio: 'pipe', detached: true });
}
