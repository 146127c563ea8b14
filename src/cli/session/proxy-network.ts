/**
 * The network sandbox for one run (issue: network sandbox end to end). Per run:
 *
 *   sandbox ──(internal network: no route out, no engine DNS, no host address)── proxy ──(egress network)── world
 *
 * The proxy container is airlock's own image, runs as an unprivileged user with every capability dropped and a
 * read-only root, and gets its configuration — the per-run CA key and real credential values included — over
 * stdin, never argv or a file. It prints one ready line and then its network log on stdout. Closing its stdin stops
 * it, so even a SIGKILLed airlock cannot leave a proxy running. Any failure before the command starts throws
 * (the command never runs without its sandbox); a proxy that dies during the run settles `failure`.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { LogRecord } from '../../protocol/network-log-records.js';
import { declaredPorts } from '../../protocol/policy.js';
import type { ProxyConfig } from '../../protocol/proxy-config.js';
import { callEngine, engineEnvironment, lastLines, mustCallEngine, type Engine } from '../engine/engine.js';
import type { BindMount } from '../engine/run-args.js';
import { readHostLimits } from '../engine/host-limits.js';
import { SandboxError } from '../errors.js';
import { allowWithinBridge } from './bridge-forwarding.js';
import { generateRunCa } from './ca.js';
import { resolveHostGateway } from './host-gateway.js';
import { resourceLabelArgs, resourceName } from './labels.js';
import type { NetworkCounts, NetworkSession, NetworkSessionRequest } from './network-session.js';
import { ensureProxyImage, PROXY_UID } from './proxy-image.js';
import { keptNetworkLogPath, pruneKeptNetworkLogs } from './state-dir.js';

/** Where the per-run CA certificate appears in the sandbox. */
export const SANDBOX_CA_PATH = '/etc/airlock/ca.pem';

/**
 * System bundle locations (Debian/Ubuntu, RHEL/Fedora, Alpine, SUSE): each is overlaid with the CA so clients that
 * ignore the variables below still trust the proxy, without root and without the image's cooperation. Inside the
 * sandbox every TLS peer is the proxy, so a bundle holding only the per-run CA loses nothing.
 */
export const SYSTEM_CA_BUNDLES = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem',
  '/etc/ssl/cert.pem',
  '/etc/ssl/ca-bundle.pem',
];

export const CA_ENV_VARIABLES = [
  'NODE_EXTRA_CA_CERTS',
  'SSL_CERT_FILE',
  'REQUESTS_CA_BUNDLE',
  'CURL_CA_BUNDLE',
  'GIT_SSL_CAINFO',
  'PIP_CERT',
  'AWS_CA_BUNDLE',
  'CARGO_HTTP_CAINFO',
  'DENO_CERT',
];

const READY_PREFIX = 'AIRLOCK-PROXY-READY ';
const EVENT_PREFIX = 'AIRLOCK-EVENT ';
/**
 * A watchdog for a proxy that is alive but never gets ready (one that exits is reported at once). Natively it is
 * ready within a second; in the cgroup v2 lane's emulated VM on a loaded 2-core machine, a rootless start took
 * more than 20 s, so the bound is generous: it only decides how long a hung proxy keeps a run waiting.
 */
const READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;

export interface NetworkLogOptions {
  /** Append the text log here (kept). */
  textFile?: string;
  /** Append the JSONL log here (kept). */
  jsonFile?: string;
  /** Echo each text line to stderr as `[net] …`. */
  live: boolean;
}

export function networkLogOptions(flags: Record<string, string | boolean | undefined>, cwd: string): NetworkLogOptions {
  const file = (v: string | boolean | undefined) =>
    typeof v === 'string' && v !== '' ? path.resolve(cwd, v) : undefined;
  const options: NetworkLogOptions = { live: flags['network-log-live'] === true };
  const text = file(flags['network-log']);
  const json = file(flags['network-log-json']);
  if (text) options.textFile = text;
  if (json) options.jsonFile = json;
  return options;
}

/** `host-gateway[:PORT]` in upstream_hosts means the machine running airlock, as seen from the egress network. */
export function resolveUpstreamHosts(
  hosts: Record<string, string>,
  hostGateway: string | null,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, target] of Object.entries(hosts)) {
    const m = /^host-gateway(?::(\d{1,5}))?$/.exec(target);
    if (!m) {
      out[name.toLowerCase()] = target;
      continue;
    }
    if (!hostGateway)
      throw new SandboxError(
        `upstream_hosts.${name}: the egress network has no gateway address to use for host-gateway`,
      );
    out[name.toLowerCase()] = m[1] ? `${hostGateway}:${m[1]}` : hostGateway;
  }
  return out;
}

/**
 * Every address of this machine (public ones included, loopback excluded: the guard refuses loopback anyway). An
 * allowed name whose DNS answers one of them would otherwise let the sandbox reach any port on the runner.
 */
export function hostAddresses(): string[] {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal) out.add(a.address.replace(/%.*$/, ''));
  }
  return [...out];
}

interface NetworkEndpoint {
  IPAddress?: string;
  Gateway?: string;
}

async function containerNetworks(engine: Engine, name: string): Promise<Record<string, NetworkEndpoint> | null> {
  const r = await callEngine(engine, ['container', 'inspect', '--format', '{{json .NetworkSettings.Networks}}', name]);
  if (r.code !== 0) return null;
  try {
    return JSON.parse(r.stdout) as Record<string, NetworkEndpoint>;
  } catch {
    return null;
  }
}

async function createNetworks(
  engine: Engine,
  req: NetworkSessionRequest,
): Promise<{ internal: string; egress: string }> {
  const labels = resourceLabelArgs(req.identity);
  const internal = resourceName('sandbox-net', req.identity);
  const egress = resourceName('egress-net', req.identity);
  // Internal: no route out, no engine DNS, and no address for the host on the bridge, so the sandbox can reach
  // nothing but the proxy (Podman gives internal bridges no IPv4 address; Docker needs inhibit_ipv4 for that).
  const internalArgs =
    engine.kind === 'podman'
      ? ['network', 'create', '--internal', '--disable-dns', ...labels, internal]
      : ['network', 'create', '--internal', '-o', 'com.docker.network.bridge.inhibit_ipv4=true', ...labels, internal];
  const created = await Promise.allSettled([
    mustCallEngine(engine, internalArgs, 'creating the sandbox network'),
    mustCallEngine(engine, ['network', 'create', ...labels, egress], 'creating the proxy egress network'),
  ]);
  const failed = created.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await removeNetworks(engine, [internal, egress]);
    throw failed.reason;
  }
  return { internal, egress };
}

/** The Linux bridge behind a Podman network (netavark names it at creation, before any container attaches). */
async function bridgeInterface(engine: Engine, network: string): Promise<string | null> {
  const r = await callEngine(engine, ['network', 'inspect', '--format', '{{.NetworkInterface}}', network]);
  const name = r.stdout.trim();
  return r.code === 0 && /^[\w.-]{1,15}$/.test(name) ? name : null;
}

async function removeNetworks(engine: Engine, names: string[]): Promise<void> {
  for (const name of names) await callEngine(engine, ['network', 'rm', '-f', name]);
}

function proxyContainerArgs(
  engine: Engine,
  name: string,
  image: string,
  nets: { internal: string; egress: string },
  labels: string[],
): string[] {
  const limits = readHostLimits();
  const nofile = Math.min(limits.nofile, 65536);
  const common = [
    '--name',
    name,
    ...labels,
    '--interactive',
    '--pull=never',
    '--log-driver=none',
    `--user=${PROXY_UID}:${PROXY_UID}`,
    '--read-only',
    '--cap-drop=ALL',
    '--security-opt=no-new-privileges',
    // Ports 53/80/443 (and those the allowlist names) without CAP_NET_BIND_SERVICE: a sysctl scoped to the proxy's
    // own network namespace.
    '--sysctl=net.ipv4.ip_unprivileged_port_start=0',
    '--pids-limit=512',
    `--ulimit=nofile=${nofile}:${nofile}`,
    `--ulimit=nproc=${Math.min(limits.nproc, 4096)}:${Math.min(limits.nproc, 4096)}`,
    '--network',
    nets.internal,
  ];
  return engine.kind === 'podman'
    ? ['run', '--rm', ...common, '--network', nets.egress, image]
    : ['create', '--rm', ...common, image];
}

/** Starts the proxy container; resolves once it prints its ready line. */
export async function openProxyNetwork(req: NetworkSessionRequest): Promise<NetworkSession> {
  const { engine, identity, policy, credentials, log } = req;
  const logOptions = networkLogOptions(req.flags, req.cwd);
  const cleanups: Array<() => Promise<void>> = [];
  const cleanup = async () => {
    for (const step of cleanups.reverse()) {
      try {
        await step();
      } catch (err) {
        log.warn(`cleanup: ${(err as Error).message}`);
      }
    }
  };

  try {
    // Independent start-up steps run side by side: start-up time is a feature.
    const networks = createNetworks(engine, req);
    // Awaited below; until then a failure must not count as unhandled (it would crash airlock with exit 1).
    networks.catch(() => undefined);
    const [image, ca] = await Promise.all([
      ensureProxyImage(engine, (tag) => log.info(`building the proxy image ${tag}`)),
      generateRunCa(),
    ]).catch(async (err: unknown) => {
      await networks.then(
        (n) => removeNetworks(engine, [n.internal, n.egress]),
        () => undefined,
      );
      throw err;
    });
    const runDir = await mkdtemp(path.join(tmpdir(), `airlock-${identity.runId}-`));
    cleanups.push(() => rm(runDir, { recursive: true, force: true }));
    const caFile = path.join(runDir, 'ca.pem');
    // The certificate only: the key goes to the proxy over stdin and is never written anywhere.
    await writeFile(caFile, ca.certPem, { mode: 0o644 });

    const nets = await networks;
    cleanups.push(() => removeNetworks(engine, [nets.internal, nets.egress]));
    // Pushed after the networks, so it is undone before them (cleanups run in reverse).
    const unforward = await allowWithinBridge(engine, nets.internal, (network) => bridgeInterface(engine, network));
    if (unforward) cleanups.push(unforward);

    const name = resourceName('proxy', identity);
    const labels = resourceLabelArgs(identity);
    cleanups.push(async () => void (await callEngine(engine, ['rm', '-f', name])));
    let child: ChildProcessWithoutNullStreams;
    // Its own process group: a SIGTERM to airlock's group (a cancelled CI job) is airlock's to handle; reaching the
    // proxy's client too would stop the proxy under the running command and read as a sandbox failure. The client
    // still dies with airlock: closing its stdin stops it.
    if (engine.kind === 'podman') {
      child = spawn(engine.binary, proxyContainerArgs(engine, name, image, nets, labels), {
        env: engineEnvironment(undefined),
        stdio: 'pipe',
        detached: true,
      });
    } else {
      await mustCallEngine(
        engine,
        proxyContainerArgs(engine, name, image, nets, labels),
        'creating the proxy container',
      );
      await mustCallEngine(
        engine,
        ['network', 'connect', nets.egress, name],
        'connecting the proxy to the egress network',
      );
      child = spawn(engine.binary, ['start', '--attach', '--interactive', name], {
        env: engineEnvironment(undefined),
        stdio: 'pipe',
        detached: true,
      });
    }
    child.stdin.on('error', () => undefined);
    let stderrTail = '';
    child.stderr.on('data', (c: Buffer) => {
      stderrTail = (stderrTail + c.toString('utf8')).slice(-4000);
    });
    const exited = new Promise<string>((resolve) => {
      child.on('close', (code, signal) =>
        resolve(`the proxy exited (${signal ?? `code ${code}`})${stderrTail ? `: ${lastLines(stderrTail, 5)}` : ''}`),
      );
      child.on('error', (e) => resolve(`the proxy could not be started: ${e.message}`));
    });

    // Its address on the sandbox network, which the DNS responder hands out for every name. A proxy that already
    // exited will never get one: waiting out the polls would only delay its error (by minutes on a slow engine).
    let proxyGone = false;
    void exited.then(() => (proxyGone = true));
    let endpoints: Record<string, NetworkEndpoint> | null = null;
    for (let i = 0; i < 200 && !proxyGone && !endpoints?.[nets.internal]?.IPAddress; i++) {
      endpoints = await containerNetworks(engine, name);
      if (!endpoints?.[nets.internal]?.IPAddress) await new Promise((r) => setTimeout(r, 50));
    }
    const proxyIp = endpoints?.[nets.internal]?.IPAddress;
    if (!proxyIp)
      throw new SandboxError(
        `the proxy container has no address on the sandbox network (${await Promise.race([exited, Promise.resolve('still running')])})`,
      );
    const hostGateway = await resolveHostGateway(engine, name, endpoints?.[nets.egress]?.Gateway || null);

    const counts: NetworkCounts = { allowed: 0, blocked: 0, errors: 0 };
    const sinks = await openLogSinks(logOptions, identity.runId, req.onRecord);
    cleanups.push(() => sinks.close());
    if (sinks.textPath) counts.logPath = sinks.textPath;

    const config: ProxyConfig = {
      version: 1,
      allowlist: policy.allowlist,
      ca,
      sandboxAddress: proxyIp,
      // The ports allowlist entries name get a listener each (the sysctl above lets the proxy bind any port).
      listen: { host: '0.0.0.0', http: 80, https: 443, dns: 53, ports: declaredPorts(policy.allowlist) },
      upstream: {
        dns: policy.sandbox.upstream_dns,
        hosts: resolveUpstreamHosts(policy.sandbox.upstream_hosts, hostGateway),
        connectTimeoutMs: 10_000,
        hostAddresses: hostAddresses(),
      },
      credentials: credentials.proxyCredentials,
      run: { id: identity.runId, policySha256: policy.allowlistSha256 },
    };
    if (req.audit) config.audit = true;
    if (policy.upstreamCaFile) {
      const { readFile } = await import('node:fs/promises');
      config.upstream.caPem = await readFile(policy.upstreamCaFile, 'utf8');
    }
    child.stdin.write(JSON.stringify({ ...config, log: { stdout: true } }) + '\n');

    const lines = createInterface({ input: child.stdout, crlfDelay: Infinity });
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new SandboxError(`the proxy did not report ready within ${READY_TIMEOUT_MS / 1000}s`)),
        READY_TIMEOUT_MS,
      );
      void exited.then((why) => {
        clearTimeout(timer);
        reject(new SandboxError(`the proxy failed to start: ${why}`));
      });
      lines.on('line', (line) => {
        if (line.startsWith(READY_PREFIX)) {
          clearTimeout(timer);
          resolve();
        } else if (line.startsWith(EVENT_PREFIX)) {
          sinks.event(line.slice(EVENT_PREFIX.length), counts, logOptions.live ? req.stderr : undefined);
        }
      });
    });
    // Stopping: closing stdin is the proxy's signal to exit; the container is removed by --rm.
    cleanups.push(async () => {
      child.stdin.end();
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<string>((r) => (timer = setTimeout(() => r('timeout'), STOP_GRACE_MS)));
      const outcome = await Promise.race([exited, grace]);
      clearTimeout(timer);
      if (outcome === 'timeout') child.kill('SIGKILL');
    });
    await ready;
    log.info(`proxy ${name} ready at ${proxyIp} on ${nets.internal}`);

    let closing = false;
    const failure = exited.then((why) => (closing ? new Promise<string>(() => undefined) : why));
    const mounts: BindMount[] = [
      { source: caFile, target: SANDBOX_CA_PATH, readOnly: true },
      ...SYSTEM_CA_BUNDLES.map((target) => ({ source: caFile, target, readOnly: true })),
    ];
    const env = Object.fromEntries(CA_ENV_VARIABLES.map((v) => [v, SANDBOX_CA_PATH]));
    return {
      runArgs: [
        '--network',
        nets.internal,
        '--dns',
        proxyIp,
        // No IPv6 at all in the sandbox: not even link-local, which would reach the host's side of the bridge.
        '--sysctl=net.ipv6.conf.all.disable_ipv6=1',
        '--sysctl=net.ipv6.conf.default.disable_ipv6=1',
      ],
      env,
      mounts,
      failure,
      counts: () => ({ ...counts }),
      close: async () => {
        closing = true;
        await cleanup();
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

export interface LogSinks {
  textPath?: string;
  event(raw: string, counts: NetworkCounts, live: NodeJS.WritableStream | undefined): void;
  close(): Promise<void>;
}

/** Event lines are `<json>\t<text>`: JSON escapes tabs and the text line has no control characters. */
export async function openLogSinks(
  options: NetworkLogOptions,
  runId: string,
  onRecord?: (record: LogRecord) => void,
): Promise<LogSinks> {
  const open = async (file: string): Promise<WriteStream> => {
    await mkdir(path.dirname(file), { recursive: true });
    return createWriteStream(file, { flags: 'a', mode: 0o600 });
  };
  // Unrequested, the log lives in airlock's own directory, where only the newest few are kept (state-dir.ts).
  const textPath = options.textFile ?? (await keptNetworkLogPath(runId));
  const text = await open(textPath);
  const json = options.jsonFile ? await open(options.jsonFile) : undefined;
  let blockedSeen = false;
  return {
    textPath,
    event(raw, counts, live) {
      const tab = raw.indexOf('\t');
      const jsonLine = tab < 0 ? raw : raw.slice(0, tab);
      const textLine = tab < 0 ? '' : raw.slice(tab + 1);
      try {
        const record = JSON.parse(jsonLine) as LogRecord & { event?: string; decision?: string };
        if (record === null || typeof record !== 'object' || Array.isArray(record)) return;
        onRecord?.(record);
        if (record.decision === 'allowed') counts.allowed++;
        else if (record.decision === 'blocked') {
          counts.blocked++;
          blockedSeen = true;
        } else if (record.decision === 'would_block') blockedSeen = true; else if (record.decision === 'error') counts.errors++;
      } catch {
        return;
      }
      json?.write(jsonLine + '\n');
      if (textLine) {
        text.write(textLine + '\n');
        live?.write(`[net] ${textLine}\n`);
      }
    },
    async close() {
      await Promise.all([text, json].map((s) => (s ? new Promise<void>((r) => s.end(r)) : Promise.resolve())));
      // An unrequested log is kept only when it explains something (a blocked or audit-flagged request), and only
      // the newest few.
      if (!options.textFile) {
        if (blockedSeen) await pruneKeptNetworkLogs(path.dirname(textPath));
        else await rm(textPath, { force: true });
      }
    },
  };
}
