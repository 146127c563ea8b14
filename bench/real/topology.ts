/**
 * The real topology the benchmarks measure, built from the machine's own engine (rootful Podman):
 *
 *   sandbox ──sandbox net── airlock's proxy container ──egress net── (host routes) ── bench bridge ── upstream
 *   client ──front net── nginx / mitmproxy container ──back net── (host routes) ── bench bridge ── upstream
 *   client ──────────────────────────────────────────────────────────── bench bridge ── upstream ("direct")
 *
 * The upstream is a Node HTTPS server in a container on a bridge network of its own ("the bench bridge"); every
 * client is the same program in the same image, and every proxy runs in a container, two networks away from the
 * upstream, as airlock's does: containers on this machine share one CPU weight among them (cgroup v1 group
 * scheduling under libpod_parent) against every process on the host, so a proxy on the host would be measured with
 * an advantage the sandboxed path never has. Nothing here leaves the machine: every name the clients use maps to
 * the upstream container or to the proxy under test.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { build } from 'esbuild';
import { readHostLimits } from '../../src/cli/engine/host-limits.js';
import { generateRunCa } from '../../src/cli/session/ca.js';
import { LABEL } from '../../src/cli/session/labels.js';
import { PROXY_NODE_FLAGS, proxyBundlePath } from '../../src/cli/session/proxy-image.js';
import type { ProxyConfig } from '../../src/protocol/proxy-wire.js';
import { ensureTestImage, TEST_IMAGE } from '../../test/helpers/images.js';
import { makeTestPki, type TestPki } from '../../test/helpers/tls-fixtures.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const ENGINE = 'podman';
/** The names every client uses: load phases spread over h0-h3, the workloads use the two registries. */
export const BENCH_NAMES = ['h0.bench.test', 'h1.bench.test', 'h2.bench.test', 'h3.bench.test'];
export const REGISTRY_NAMES = ['registry.bench.test', 'pypi.bench.test'];
const ALL_NAMES = [...BENCH_NAMES, ...REGISTRY_NAMES];
/** Where the bench's own files appear in every client container. */
export const BENCH_MOUNT = '/bench';
const NODE_IN_CONTAINER = '/usr/local/bin/node';

export interface Topology {
  id: string;
  work: string;
  network: string;
  /** The host's address on the bench bridge. */
  gateway: string;
  upstreamIp: string;
  /** The comparison proxies' two networks: clients on `front`, the way to the upstream through `back`. */
  front: { name: string; subnetPrefix: string };
  back: string;
  pki: TestPki;
  /** Host directory mounted read-only at /bench in every client: bundles, CA files. */
  benchDir: string;
  close(): Promise<void>;
}

export function loadAverage(): string {
  return loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
}

export function say(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

function must(argv: string[], what: string): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${what}: ${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout.trim();
}

/** Debian packages the benchmarks compare against or run with, installed with apt when missing. */
export function ensureDebianPackages(packages: Array<{ name: string; provides: string }>): void {
  const missing = packages.filter((p) => !existsSync(p.provides)).map((p) => p.name);
  if (missing.length === 0) return;
  say(`installing ${missing.join(' ')} (apt-get install)`);
  const r = spawnSync('apt-get', ['install', '-y', '-qq', ...missing], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (r.status !== 0) throw new Error(`apt-get install ${missing.join(' ')} failed`);
}

/** A TypeScript file of bench/real bundled into one .mjs that the host's node runs in a container. */
export async function bundle(entry: string, outfile: string): Promise<void> {
  await build({
    entryPoints: [join(ROOT, 'bench/real', entry)],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    logLevel: 'warning',
  });
}

export function ulimitArgs(): string[] {
  const { nofile, nproc } = readHostLimits();
  return [`--ulimit=nofile=${nofile}:${nofile}`, `--ulimit=nproc=${nproc}:${nproc}`];
}

/** The host's node binary, mounted into containers so clients and upstream need no Node in the image. */
export function nodeMount(): string[] {
  return ['-v', `${process.execPath}:${NODE_IN_CONTAINER}:ro`];
}

async function bridgeAddresses(network: string): Promise<{ gateway: string; subnet: string; prefix: string }> {
  const out = must(
    [ENGINE, 'network', 'inspect', '--format', '{{range .Subnets}}{{.Subnet}} {{.Gateway}}{{"\\n"}}{{end}}', network],
    'reading the bench network',
  );
  const [subnet, gateway] = out.split('\n')[0]!.split(' ');
  if (!subnet || !gateway || !/^\d+\.\d+\.\d+\.1$/.test(gateway)) throw new Error(`unexpected bench subnet: ${out}`);
  return { subnet, gateway, prefix: gateway.replace(/\.1$/, '.') };
}

function waitForLine(child: ChildProcess, wanted: string, timeoutMs: number): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "${wanted}" within ${timeoutMs} ms`)), timeoutMs);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line === wanted) {
        clearTimeout(timer);
        resolvePromise();
      }
    });
    child.on('close', (code) => reject(new Error(`exited ${code} before "${wanted}"`)));
  });
}

/**
 * The bench bridge and the upstream container on it, serving `served` (a directory; none: nothing) besides the
 * load routes. The upstream gets a fixed address (.10 of the new bridge) so its certificate can name it.
 */
export async function openTopology(served: string | null): Promise<Topology> {
  await ensureTestImage(ENGINE);
  const id = `${process.pid}-${randomBytes(3).toString('hex')}`;
  const work = await mkdtemp(join(tmpdir(), 'airlock-bench-real-'));
  const benchDir = join(work, 'bench');
  await mkdir(join(benchDir, 'certs'), { recursive: true });
  const servedDir = served ?? join(work, 'served');
  await mkdir(servedDir, { recursive: true });
  const network = `airlock-bench-${id}`;
  const front = `airlock-bench-${id}-front`;
  const back = `airlock-bench-${id}-back`;
  const children: ChildProcess[] = [];
  const upstreamName = `airlock-bench-upstream-${id}`;
  const close = async () => {
    spawnSync(ENGINE, ['rm', '-f', '-t', '0', upstreamName], { stdio: 'ignore' });
    for (const child of children) child.kill('SIGKILL');
    for (const net of [network, front, back]) spawnSync(ENGINE, ['network', 'rm', '-f', net], { stdio: 'ignore' });
    await rm(work, { recursive: true, force: true });
  };
  try {
    for (const net of [network, front, back]) must([ENGINE, 'network', 'create', net], 'creating a bench network');
    const { gateway } = await bridgeAddresses(network);
    const frontPrefix = (await bridgeAddresses(front)).prefix;
    const upstreamIp = gateway.replace(/\.1$/, '.10');
    const pki = await makeTestPki(['*.bench.test', upstreamIp]);
    await writeFile(join(benchDir, 'certs/cert.pem'), pki.certPem);
    await writeFile(join(benchDir, 'certs/key.pem'), pki.keyPem, { mode: 0o644 });
    await writeFile(join(benchDir, 'ca.pem'), pki.caPem);
    await Promise.all([
      bundle('upstream-server.ts', join(benchDir, 'upstream.mjs')),
      bundle('load-client.ts', join(benchDir, 'load-client.mjs')),
    ]);
    const upstream = spawn(
      ENGINE,
      [
        'run',
        '--rm',
        '--name',
        upstreamName,
        '--label',
        'io.airlock.bench=upstream',
        '--network',
        network,
        '--ip',
        upstreamIp,
        ...ulimitArgs(),
        ...nodeMount(),
        '-v',
        `${benchDir}:${BENCH_MOUNT}:ro`,
        '-v',
        `${servedDir}:/srv:ro`,
        TEST_IMAGE,
        'node',
        `${BENCH_MOUNT}/upstream.mjs`,
        `${BENCH_MOUNT}/certs`,
        '/srv',
        '443',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(upstream);
    await waitForLine(upstream, 'READY', 60_000);
    return {
      id,
      work,
      network,
      gateway,
      upstreamIp,
      front: { name: front, subnetPrefix: frontPrefix },
      back,
      pki,
      benchDir,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** PID (host view) of the upstream container's node process, for CPU accounting. */
export function upstreamPid(topology: Topology): number {
  const name = must(
    [
      ENGINE,
      'ps',
      '--filter',
      `network=${topology.network}`,
      '--filter',
      'label=io.airlock.bench=upstream',
      '--format',
      '{{.Names}}',
    ],
    'finding the upstream',
  );
  return Number(must([ENGINE, 'inspect', '--format', '{{.State.Pid}}', name.split('\n')[0]!], 'upstream pid'));
}

// ---------- the clients ----------

export interface ClientRun {
  code: number;
  ms: number;
  stdout: string[];
  stderrTail: string;
}

/** Runs argv with stdout read line by line (`onLine` sees each as it comes, with the child's pid); resolves at exit. */
export function runClient(
  argv: string[],
  cwd: string,
  onLine?: (line: string, pid: number) => void,
): Promise<ClientRun> {
  return new Promise((resolvePromise, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(argv[0]!, argv.slice(1), { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const stdout: string[] = [];
    let stderrTail = '';
    createInterface({ input: child.stdout }).on('line', (line) => {
      stdout.push(line);
      onLine?.(line, child.pid ?? 0);
    });
    child.stderr.on('data', (d: Buffer) => (stderrTail = (stderrTail + d.toString()).slice(-3000)));
    child.on('error', reject);
    child.on('close', (code) =>
      resolvePromise({ code: code ?? 1, ms: Number(process.hrtime.bigint() - started) / 1e6, stdout, stderrTail }),
    );
  });
}

/** A plain container on the bench bridge (or `network`), the bench names resolving to `address`. */
export function plainContainer(
  topology: Topology,
  options: { address: string; network?: string; env?: Record<string, string>; mounts?: string[]; workdir?: string },
  command: string[],
): string[] {
  return [
    ENGINE,
    'run',
    '--rm',
    '--network',
    options.network ?? topology.network,
    ...ulimitArgs(),
    ...ALL_NAMES.flatMap((name) => ['--add-host', `${name}:${options.address}`]),
    ...nodeMount(),
    '-v',
    `${topology.benchDir}:${BENCH_MOUNT}:ro`,
    ...(options.mounts ?? []).flatMap((m) => ['-v', m]),
    ...Object.entries(options.env ?? {}).flatMap(([k, v]) => ['-e', `${k}=${v}`]),
    ...(options.workdir ? ['-w', options.workdir] : []),
    TEST_IMAGE,
    ...command,
  ];
}

/**
 * A workspace whose policy lets the sandbox reach exactly the bench names, mapped to the upstream container and
 * verified against the bench CA: the same names and certificate the plain containers use.
 */
export async function airlockWorkspace(topology: Topology, dir: string): Promise<void> {
  await mkdir(join(dir, '.airlock'), { recursive: true });
  await writeFile(join(dir, '.airlock/upstream-ca.pem'), topology.pki.caPem);
  const hosts = ALL_NAMES.map((name) => `  ${name}: "${topology.upstreamIp}:443"`).join('\n');
  await writeFile(
    join(dir, '.airlock/sandbox.yaml'),
    `image: ${TEST_IMAGE}\nupstream_ca_file: upstream-ca.pem\nupstream_hosts:\n${hosts}\n`,
  );
  await writeFile(
    join(dir, '.airlock/network-allowlist.yaml'),
    `domains:\n${ALL_NAMES.map((n) => `  - ${n}`).join('\n')}\n`,
  );
}

/** `airlock run` of the built CLI (dist/), with the bench files and the node binary mounted like the plain runs. */
export function airlockRun(topology: Topology, mounts: string[], command: string[]): string[] {
  const cli = join(ROOT, 'dist/cli/bin.js');
  if (!existsSync(cli)) throw new Error('dist/cli/bin.js is missing: run `npm run build` first');
  return [
    process.execPath,
    cli,
    'run',
    '--engine',
    ENGINE,
    '--mount',
    `${process.execPath}:${NODE_IN_CONTAINER}:ro`,
    '--mount',
    `${topology.benchDir}:${BENCH_MOUNT}:ro`,
    ...mounts.flatMap((m) => ['--mount', m]),
    '--',
    ...command,
  ];
}

/** Host PID of the proxy container the airlock process `ownerPid` started (found by its owner label). */
export function proxyPidOf(ownerPid: number): number | null {
  const r = spawnSync(
    ENGINE,
    [
      'ps',
      '--filter',
      `label=${LABEL.ownerPid}=${ownerPid}`,
      '--filter',
      'name=airlock-proxy-',
      '--format',
      '{{.Names}}',
    ],
    { encoding: 'utf8' },
  );
  const name = r.stdout.trim().split('\n')[0];
  if (!name) return null;
  const pid = Number(spawnSync(ENGINE, ['inspect', '--format', '{{.State.Pid}}', name], { encoding: 'utf8' }).stdout);
  return pid > 0 ? pid : null;
}

// ---------- the comparison proxies ----------

export interface ComparisonProxy {
  name: string;
  /** Where clients send their requests, and from which network. */
  address: string;
  network: string;
  port: number;
  /** CA file (inside /bench) the client trusts for this proxy. */
  caInContainer: string;
  /** The process doing the work (nginx's one worker, mitmdump), for CPU and RSS. */
  pid: () => number | null;
  close(): Promise<void>;
}

async function waitForPort(host: string, port: number, timeoutMs: number): Promise<void> {
  const { connect } = await import('node:net');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, host, () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on ${host}:${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A comparison proxy in a container of the test image with the host's binary mounted: on the front network at a
 * fixed address (clients reach it there) and on the back network (its way to the upstream), like airlock's proxy
 * between its sandbox and egress networks.
 */
async function comparisonContainer(
  topology: Topology,
  name: string,
  octet: number,
  mounts: string[],
  command: string[],
): Promise<{ address: string; containerPid: () => number | null; close(): Promise<void> }> {
  const address = `${topology.front.subnetPrefix}${octet}`;
  const container = `airlock-bench-${name}-${topology.id}`;
  const child = spawn(
    ENGINE,
    [
      'run',
      '--rm',
      '--name',
      container,
      '--network',
      `${topology.front.name}:ip=${address}`,
      '--network',
      topology.back,
      ...ulimitArgs(),
      ...mounts.flatMap((m) => ['-v', m]),
      TEST_IMAGE,
      ...command,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  // The host can reach the front network's addresses through its bridge.
  await waitForPort(address, 443, 30_000);
  return {
    address,
    containerPid: () => {
      const pid = Number(
        spawnSync(ENGINE, ['inspect', '--format', '{{.State.Pid}}', container], { encoding: 'utf8' }).stdout,
      );
      return pid > 0 ? pid : null;
    },
    close: async () => {
      spawnSync(ENGINE, ['rm', '-f', '-t', '0', container], { stdio: 'ignore' });
      child.kill('SIGKILL');
    },
  };
}

/**
 * Debian's nginx as a TLS-terminating reverse proxy like airlock's: one worker, keep-alive to the upstream with
 * upstream certificate verification and TLS session reuse, bodies streamed (no buffering to disk, as airlock and
 * mitmproxy stream), one access-log line per request (airlock logs every request too).
 */
export async function startNginx(topology: Topology): Promise<ComparisonProxy> {
  ensureDebianPackages([{ name: 'nginx', provides: '/usr/sbin/nginx' }]);
  const dir = join(topology.work, 'nginx');
  await mkdir(join(dir, 'tmp'), { recursive: true });
  await chmod(join(dir, 'tmp'), 0o777);
  await writeFile(join(dir, 'cert.pem'), topology.pki.certPem);
  await writeFile(join(dir, 'key.pem'), topology.pki.keyPem);
  await writeFile(join(dir, 'upstream-ca.pem'), topology.pki.caPem);
  const conf = `
worker_processes 1;
daemon off;
pid /nginx/nginx.pid;
error_log /nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log /nginx/access.log;
  client_body_temp_path /nginx/tmp/body;
  proxy_temp_path /nginx/tmp/proxy;
  fastcgi_temp_path /nginx/tmp/fastcgi;
  uwsgi_temp_path /nginx/tmp/uwsgi;
  scgi_temp_path /nginx/tmp/scgi;
  keepalive_requests 1000000;
  upstream bench_upstream {
    server ${topology.upstreamIp}:443;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 443 ssl;
    ssl_certificate /nginx/cert.pem;
    ssl_certificate_key /nginx/key.pem;
    location / {
      proxy_pass https://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_ssl_server_name on;
      proxy_ssl_name $host;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate /nginx/upstream-ca.pem;
      proxy_ssl_session_reuse on;
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
`;
  await writeFile(join(dir, 'nginx.conf'), conf);
  const container = await comparisonContainer(
    topology,
    'nginx',
    11,
    ['/usr/sbin/nginx:/usr/sbin/nginx:ro', `${dir}:/nginx`],
    ['nginx', '-c', '/nginx/nginx.conf', '-p', '/nginx'],
  );
  return {
    name: 'nginx',
    address: container.address,
    network: topology.front.name,
    port: 443,
    caInContainer: `${BENCH_MOUNT}/ca.pem`,
    // The master is the container's first process; its one child is the worker that serves.
    pid: () => {
      const master = container.containerPid();
      const r = spawnSync('pgrep', ['-P', String(master)], { encoding: 'utf8' });
      const pid = Number(r.stdout.trim().split('\n')[0]);
      return pid > 0 ? pid : null;
    },
    close: () => container.close(),
  };
}

/**
 * mitmdump as a reverse proxy in front of `upstream`, verifying it against `upstreamCa`: bare, without Airut's addon
 * (which would cost more per request), streaming large bodies as Airut's deployment does.
 */
export function mitmdumpReverseArgs(o: {
  upstream: string;
  listen: { host: string; port: number };
  confdir: string;
  upstreamCa: string;
}): string[] {
  const options = {
    confdir: o.confdir,
    ssl_verify_upstream_trusted_ca: o.upstreamCa,
    keep_host_header: 'true',
    connection_strategy: 'lazy',
    termlog_verbosity: 'error',
    flow_detail: '0',
    // Without this mitmproxy holds whole bodies in memory.
    stream_large_bodies: '1m',
  };
  return [
    '--mode',
    `reverse:https://${o.upstream}`,
    '--listen-host',
    o.listen.host,
    '--listen-port',
    String(o.listen.port),
    ...Object.entries(options).flatMap(([k, v]) => ['--set', `${k}=${v}`]),
  ];
}

/** mitmproxy (what Airut runs) in reverse mode, Debian's package run from the host in a container. */
export async function startMitmproxy(topology: Topology): Promise<ComparisonProxy> {
  ensureDebianPackages([{ name: 'mitmproxy', provides: '/usr/bin/mitmdump' }]);
  const confdir = join(topology.work, 'mitm');
  await mkdir(confdir, { recursive: true });
  await writeFile(join(confdir, 'upstream-ca.pem'), topology.pki.caPem);
  const container = await comparisonContainer(
    topology,
    'mitmproxy',
    12,
    [
      '/usr/bin/mitmdump:/usr/bin/mitmdump:ro',
      '/usr/lib/python3/dist-packages:/usr/lib/python3/dist-packages:ro',
      `${confdir}:/mitm`,
    ],
    [
      'mitmdump',
      ...mitmdumpReverseArgs({
        upstream: `${topology.upstreamIp}:443`,
        listen: { host: '0.0.0.0', port: 443 },
        confdir: '/mitm',
        upstreamCa: '/mitm/upstream-ca.pem',
      }),
    ],
  );
  // The client reads its CA from /bench, so mitmproxy's generated CA is copied there (once it has written it).
  const caFile = join(confdir, 'mitmproxy-ca-cert.pem');
  for (let waited = 0; !existsSync(caFile) && waited < 30_000; waited += 100)
    await new Promise((r) => setTimeout(r, 100));
  const ca = await readFile(caFile, 'utf8');
  await writeFile(join(topology.benchDir, 'mitm-ca.pem'), ca);
  return {
    name: 'mitmproxy',
    address: container.address,
    network: topology.front.name,
    port: 443,
    caInContainer: `${BENCH_MOUNT}/mitm-ca.pem`,
    pid: container.containerPid,
    close: () => container.close(),
  };
}

/**
 * airlock's proxy program (the built bundle, the proxy image's node flags, event lines on stdout read by this
 * process as the CLI reads them) run on the host, listening on the bench bridge: a diagnostic, the same program as
 * the airlock column without the container around it (and with a host process's CPU share).
 */
export async function startAirlockOnHost(
  topology: Topology,
  variant: { name?: string; nodeFlags?: string[]; bundle?: string; eventLog?: boolean } = {},
): Promise<ComparisonProxy> {
  const name = variant.name ?? 'airlock-host';
  const ca = await generateRunCa();
  await writeFile(join(topology.benchDir, `${name}-ca.pem`), ca.certPem);
  const config: ProxyConfig = {
    version: 1,
    allowlist: { domains: ALL_NAMES, url_prefixes: [] },
    ca,
    sandboxAddress: topology.gateway,
    // 443 itself: the client's Host then names no port, and the proxy judges requests as made to 443 (a Host naming
    // another port than the listener's is refused).
    listen: { host: topology.gateway, http: 0, https: 443, dns: 0 },
    upstream: {
      dns: [],
      hosts: Object.fromEntries(ALL_NAMES.map((n) => [n, `${topology.upstreamIp}:443`])),
      caPem: topology.pki.caPem,
      connectTimeoutMs: 10_000,
    },
    credentials: { masked: [], signing: [] },
    run: { id: 'bench', policySha256: '' },
    ...(variant.eventLog === false ? {} : { log: { stdout: true } }),
  };
  const flags = variant.nodeFlags ?? PROXY_NODE_FLAGS;
  const child = spawn(process.execPath, [...flags, variant.bundle ?? proxyBundlePath()], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  child.stdin.write(`${JSON.stringify(config)}\n`);
  const port = await new Promise<number>((resolvePromise, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      // Every event line is parsed, as the CLI does, so the pipe costs what it costs in production.
      if (line.startsWith('AIRLOCK-PROXY-READY '))
        resolvePromise((JSON.parse(line.slice(20)) as { https: number }).https);
      else if (line.startsWith('AIRLOCK-EVENT ')) JSON.parse(line.slice(14).split('\t')[0]!);
    });
    child.on('close', (code) => reject(new Error(`the host proxy exited ${code}`)));
  });
  return {
    name,
    address: topology.gateway,
    network: topology.network,
    port,
    caInContainer: `${BENCH_MOUNT}/${name}-ca.pem`,
    pid: () => child.pid ?? null,
    close: async () => {
      child.stdin.end();
      await new Promise((r) => setTimeout(r, 200));
      child.kill('SIGKILL');
    },
  };
}

// ---------- process accounting ----------

/** utime + stime of a process in ms (from /proc/PID/stat; the host sees container processes too). */
export function cpuMs(pid: number | null): number {
  const { user, system } = cpuSplitMs(pid);
  return user + system;
}

/** utime and stime of a process in ms: system time includes the kernel's network path run on its behalf. */
export function cpuSplitMs(pid: number | null): { user: number; system: number } {
  if (pid === null) return { user: NaN, system: NaN };
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: (Number(fields[11]) * 1000) / 100, system: (Number(fields[12]) * 1000) / 100 };
  } catch {
    return { user: NaN, system: NaN };
  }
}

/** TCP connections the process's network namespace has accepted so far (`PassiveOpens` of /proc/PID/net/snmp). */
export function acceptedConnections(pid: number | null): number {
  if (pid === null) return NaN;
  try {
    const lines = readFileSync(`/proc/${pid}/net/snmp`, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('Tcp:'));
    const names = lines[0]!.split(/\s+/);
    return Number(lines[1]!.split(/\s+/)[names.indexOf('PassiveOpens')]);
  } catch {
    return NaN;
  }
}

export function rssMB(pid: number | null): number {
  if (pid === null) return NaN;
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb ? Number(kb) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

// ---------- reporting ----------

export function median(xs: number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** Replaces (or appends) the `## title` section of docs/benchmarks.md, leaving the other sections alone. */
export async function writeDocSection(title: string, body: string): Promise<void> {
  const file = join(ROOT, 'docs/benchmarks.md');
  const doc = existsSync(file) ? await readFile(file, 'utf8') : '# Benchmarks\n';
  const heading = `## ${title}\n`;
  const section = `${heading}\n${body.trim()}\n`;
  const start = doc.indexOf(`\n${heading}`);
  let next: string;
  if (start < 0) next = `${doc.trimEnd()}\n\n${section}`;
  else {
    const after = doc.indexOf('\n## ', start + 1);
    next = doc.slice(0, start + 1) + section + (after < 0 ? '' : `\n${doc.slice(after + 1)}`);
  }
  await writeFile(file, `${next.trimEnd()}\n`);
}
