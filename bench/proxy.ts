/**
 * `npm run bench:proxy`: airlock's proxy against a direct connection and against mitmproxy (what Airut runs), on
 * loopback, same upstream, same client, one run. Each server is its own process so the load generator, the
 * upstream and the proxy do not share an event loop. Prints a markdown table and writes it into
 * docs/benchmarks.md ("Proxy" section).
 *
 * The mitmproxy column is bare mitmdump in reverse mode (no addon): Airut's real proxy also runs its Python
 * filter on every request, so this comparison flatters mitmproxy.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { PROXY_NODE_FLAGS as PRODUCTION_PROXY_FLAGS } from '../src/cli/session/proxy-image.js';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { generateRunCa } from '../src/cli/session/ca.js';
import { encodeProxyConfig, READY_LINE_PREFIX, type ProxyConfig } from '../src/protocol/proxy-wire.js';
import { makeTestPki } from '../test/helpers/tls-fixtures.js';
import { patternStream } from '../test/helpers/upstream.js';
import { mitmdumpReverseArgs } from './real/topology.js';

const MB = 1024 * 1024;
const HOSTS = Array.from({ length: 64 }, (_, i) => `h${i}.bench.test`);
const SMALL_BODY = Buffer.alloc(64, 'x');
/** h0-h3 carry the load phases; each target gets its own never-seen names for the first-request phase. */
const firstHostsAt = (offset: number): { listed: string[]; wildcard: string[] } => ({
  listed: HOSTS.slice(offset, offset + 8),
  wildcard: HOSTS.slice(offset + 8, offset + 16),
});
const AIRLOCK_FIRST = firstHostsAt(20);
const DOWNLOAD_BYTES = 512 * MB;
const KEEPALIVE_CONCURRENCY = 32;
const NEWCONN_CONCURRENCY = 16;
const RSS_CONCURRENCY = 200;
const PHASE_MS = Number(process.env.BENCH_PHASE_MS ?? 5000);
/** Node flags for the proxy process: the proxy image's own by default; BENCH_PROXY_NODE_FLAGS="…" to try others. */
const PROXY_NODE_FLAGS =
  process.env.BENCH_PROXY_NODE_FLAGS !== undefined
    ? process.env.BENCH_PROXY_NODE_FLAGS.split(' ').filter(Boolean)
    : PRODUCTION_PROXY_FLAGS;
/** The comparison row: the same proxy with node's default GC settings (more RSS, a little more throughput). */
const DEFAULT_GC_FLAGS: string[] = [];
/** BENCH_ONLY=airlock measures one target and leaves docs/benchmarks.md alone (for tuning). */
const ONLY = process.env.BENCH_ONLY;

interface Target {
  name: string;
  port: number;
  ca: string;
  pid?: number;
}

interface Figures {
  keepAliveRps: number;
  p50: number;
  p99: number;
  newConnPerSec: number;
  downloadMBps: number;
  /** First request to a host the allowlist names exactly (airlock mints its leaf at startup). */
  firstConnectionMs: number;
  /** First request to a host only a wildcard entry matches (served by the `*.bench.test` leaf minted at startup). */
  firstWildcardMs: number;
  peakRssMB?: number;
}

// ---------- the upstream, as its own process ----------

async function runUpstream(): Promise<void> {
  const input = createInterface({ input: process.stdin });
  const { certPem, keyPem } = JSON.parse((await input[Symbol.asyncIterator]().next()).value as string) as {
    certPem: string;
    keyPem: string;
  };
  const server = https.createServer({ cert: certPem, key: keyPem, keepAliveTimeout: 60_000 }, (req, res) => {
    const bytes = /^\/bytes\/(\d+)/.exec(req.url ?? '');
    req.resume();
    if (bytes) {
      res.writeHead(200, { 'Content-Length': bytes[1], 'Content-Type': 'application/octet-stream' });
      patternStream(Number(bytes[1])).pipe(res);
      return;
    }
    res.writeHead(200, { 'Content-Length': SMALL_BODY.length, 'Content-Type': 'text/plain' });
    res.end(SMALL_BODY);
  });
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${(server.address() as net.AddressInfo).port}\n`);
  });
  process.stdin.on('end', () => process.exit(0));
}

// ---------- the client ----------

function once(target: Target, host: string, path: string, agent: https.Agent | false): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = https.request(
      { host: '127.0.0.1', port: target.port, servername: host, ca: target.ca, path, agent, headers: { Host: host } },
      (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => (bytes += c.length));
        res.on('end', () => (res.statusCode === 200 ? resolve(bytes) : reject(new Error(`status ${res.statusCode}`))));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
    void started;
  });
}

async function closedLoop(
  target: Target,
  concurrency: number,
  durationMs: number,
  keepAlive: boolean,
  onTick?: () => void,
): Promise<{ count: number; latencies: number[]; errors: number }> {
  const agent = keepAlive ? new https.Agent({ keepAlive: true, maxSockets: concurrency }) : false;
  const latencies: number[] = [];
  let errors = 0;
  const deadline = performance.now() + durationMs;
  const ticker = onTick ? setInterval(onTick, 50) : undefined;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      const host = HOSTS[worker % 4]!;
      while (performance.now() < deadline) {
        const t0 = performance.now();
        try {
          await once(target, host, '/small', agent);
          latencies.push(performance.now() - t0);
        } catch {
          errors++;
        }
      }
    }),
  );
  if (ticker) clearInterval(ticker);
  if (agent) agent.destroy();
  return { count: latencies.length, latencies, errors };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

function loadAverage(): string {
  return os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
}

function rssMB(pid: number): number {
  try {
    const status = spawnSync('cat', [`/proc/${pid}/status`], { encoding: 'utf8' }).stdout;
    const kb = /VmRSS:\s+(\d+)/.exec(status)?.[1];
    return kb ? Number(kb) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Highest RSS of the proxy process while RSS_CONCURRENCY keep-alive connections hammer it. */
async function peakRssUnderLoad(target: Target, pid: number): Promise<number> {
  process.stderr.write(`bench: ${target.name}: ${RSS_CONCURRENCY} concurrent connections\n`);
  let peak = rssMB(pid);
  await closedLoop(target, RSS_CONCURRENCY, 3000, true, () => {
    peak = Math.max(peak, rssMB(pid));
  });
  return peak;
}

/** Median time of a first request on a new TLS connection, one per host name. */
async function firstRequests(target: Target, hosts: string[]): Promise<number> {
  const times: number[] = [];
  for (const host of hosts) {
    const t = performance.now();
    try {
      await once(target, host, '/small', false);
      times.push(performance.now() - t);
    } catch (err) {
      process.stderr.write(`bench: ${target.name}: first request to ${host} failed: ${(err as Error).message}\n`);
    }
  }
  return percentile(
    times.sort((a, b) => a - b),
    50,
  );
}

/** Host names a target has never seen: some listed exactly in airlock's allowlist, some matched by its wildcard. */
interface FirstHosts {
  listed: string[];
  wildcard: string[];
}

async function measure(target: Target, firstHosts: FirstHosts): Promise<Figures> {
  process.stderr.write(`bench: ${target.name}: warm-up\n`);
  await closedLoop(target, 8, 1000, true);

  process.stderr.write(`bench: ${target.name}: keep-alive requests\n`);
  const ka = await closedLoop(target, KEEPALIVE_CONCURRENCY, PHASE_MS, true);
  const sorted = [...ka.latencies].sort((a, b) => a - b);

  process.stderr.write(`bench: ${target.name}: new TLS connections\n`);
  const nc = await closedLoop(target, NEWCONN_CONCURRENCY, Math.min(PHASE_MS, 4000), false);

  process.stderr.write(`bench: ${target.name}: large download\n`);
  const t0 = performance.now();
  const got = await once(target, HOSTS[0]!, `/bytes/${DOWNLOAD_BYTES}`, false);
  const downloadMBps = got / MB / ((performance.now() - t0) / 1000);

  process.stderr.write(`bench: ${target.name}: first connection to new hosts\n`);
  const firstListed = await firstRequests(target, firstHosts.listed);
  const firstWildcard = await firstRequests(target, firstHosts.wildcard);

  const peakRssMB = target.pid === undefined ? undefined : await peakRssUnderLoad(target, target.pid);
  return {
    keepAliveRps: ka.count / (PHASE_MS / 1000),
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    newConnPerSec: nc.count / (Math.min(PHASE_MS, 4000) / 1000),
    downloadMBps,
    firstConnectionMs: firstListed,
    firstWildcardMs: firstWildcard,
    ...(peakRssMB !== undefined ? { peakRssMB } : {}),
  };
}

// ---------- the servers ----------

function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve();
      });
      s.on('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`nothing listening on ${port}`));
        else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

async function firstLine(child: ChildProcess, prefix = ''): Promise<string> {
  const lines = createInterface({ input: child.stdout! });
  for await (const line of lines) if (line.startsWith(prefix)) return line;
  throw new Error('the child closed stdout without answering');
}

function ensureMitmproxy(): string | null {
  const found = spawnSync('sh', ['-c', 'command -v mitmdump'], { encoding: 'utf8' }).stdout.trim();
  if (found) return found;
  process.stderr.write('bench: installing mitmproxy (apt-get install -y mitmproxy)\n');
  spawnSync('apt-get', ['install', '-y', '-qq', 'mitmproxy'], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  return spawnSync('sh', ['-c', 'command -v mitmdump'], { encoding: 'utf8' }).stdout.trim() || null;
}

function mitmVersion(mitmdump: string): string {
  const out = spawnSync(mitmdump, ['--version'], { encoding: 'utf8' }).stdout;
  return /Mitmproxy:\s*(\S+)/.exec(out)?.[1] ?? 'unknown';
}

// ---------- the run ----------

const READING = [
  'Reading the figures:',
  '',
  '- Through a proxy every byte is decrypted and encrypted once more, and on this two-core machine the client, the',
  '  upstream and the proxy share the CPUs, so about half of direct throughput is the ceiling for any TLS-terminating',
  '  proxy here; mitmproxy shows the same shape at a lower level.',
  '- A first request to a new host costs one extra TLS handshake (proxy to upstream; the proxy never connects',
  '  upstream before the request has been judged). Leaves are signed at startup for names the allowlist lists',
  '  exactly and, as one `*.suffix` leaf, for each `*.suffix` pattern, so neither waits for a signature; only a',
  '  name two or more labels below a wildcard (`a.b.suffix`) is signed on first use (src/proxy/tls/leaf-certs.ts,',
  '  3–6 ms measured in isolation).',
  '- Peak RSS is mostly V8 heap garbage between collections plus per-connection TLS buffers (200 client and up to',
  '  200 upstream connections); the live heap at 200 connections is about 20 MB. The tuned-GC line shows the effect',
  '  of a smaller young generation; the proxy image can pass those flags to node.',
].join('\n');

function fmt(n: number | undefined, digits = 0): string {
  return n === undefined || Number.isNaN(n) ? '–' : n.toFixed(digits);
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined || !b ? '–' : `${(a / b).toFixed(2)}×`;
}

function table(direct: Figures, airlock: Figures, mitm: Figures | null, meta: string): string {
  const rows: Array<[string, keyof Figures, number]> = [
    [`keep-alive requests/s (${KEEPALIVE_CONCURRENCY} connections)`, 'keepAliveRps', 0],
    ['p50 latency, ms (keep-alive)', 'p50', 2],
    ['p99 latency, ms (keep-alive)', 'p99', 2],
    [`new TLS connections/s (${NEWCONN_CONCURRENCY} at a time)`, 'newConnPerSec', 0],
    [`large download, MB/s (${DOWNLOAD_BYTES / MB} MB, one connection)`, 'downloadMBps', 0],
    ['first request to a new host listed in the allowlist, ms (median of 8)', 'firstConnectionMs', 2],
    ['first request to a new host matched by a wildcard, ms (median of 8)', 'firstWildcardMs', 2],
    [`proxy peak RSS, MB (${RSS_CONCURRENCY} connections)`, 'peakRssMB', 0],
  ];
  const lines = [
    '| metric | direct | airlock | mitmproxy | airlock / direct | airlock / mitmproxy |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const [label, key, digits] of rows) {
    lines.push(
      `| ${label} | ${fmt(direct[key], digits)} | ${fmt(airlock[key], digits)} | ${fmt(mitm?.[key], digits)} | ${ratio(airlock[key], direct[key])} | ${ratio(airlock[key], mitm?.[key])} |`,
    );
  }
  const added = airlock.firstConnectionMs - direct.firstConnectionMs;
  const addedWildcard = airlock.firstWildcardMs - direct.firstWildcardMs;
  const check = (ok: boolean) => (ok ? 'met' : '**not met**');
  const targets = [
    `- ≥ 5× mitmproxy requests/s: ${mitm ? `${(airlock.keepAliveRps / mitm.keepAliveRps).toFixed(1)}× — ${check(airlock.keepAliveRps >= 5 * mitm.keepAliveRps)}` : 'mitmproxy unavailable'}`,
    `- ≥ 50% of direct requests/s: ${((100 * airlock.keepAliveRps) / direct.keepAliveRps).toFixed(0)}% — ${check(airlock.keepAliveRps >= 0.5 * direct.keepAliveRps)}`,
    `- ≥ 50% of direct MB/s: ${((100 * airlock.downloadMBps) / direct.downloadMBps).toFixed(0)}% — ${check(airlock.downloadMBps >= 0.5 * direct.downloadMBps)}`,
    `- < 5 ms added to a first connection to a new host: listed ${added.toFixed(2)} ms — ${check(added < 5)}; ` +
      `wildcard-matched ${addedWildcard.toFixed(2)} ms — ${check(addedWildcard < 5)}`,
    `- < 100 MB RSS at ${RSS_CONCURRENCY} connections: ${fmt(airlock.peakRssMB)} MB — ${check((airlock.peakRssMB ?? Infinity) < 100)}`,
  ];
  return [meta, '', ...lines, '', 'Targets:', '', ...targets, ''].join('\n');
}

async function writeSection(markdown: string): Promise<void> {
  const file = join(import.meta.dirname, '..', 'docs', 'benchmarks.md');
  const existing = existsSync(file) ? await readFile(file, 'utf8') : '# Benchmarks\n';
  const section = `## Proxy\n\n${markdown}`;
  const start = existing.indexOf('\n## Proxy\n');
  let next: string;
  if (start < 0) next = existing.trimEnd() + '\n\n' + section;
  else {
    const after = existing.indexOf('\n## ', start + 1);
    next = existing.slice(0, start + 1) + section + (after < 0 ? '' : '\n' + existing.slice(after + 1));
  }
  await writeFile(file, next.trimEnd() + '\n');
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'airlock-bench-'));
  const children: ChildProcess[] = [];
  try {
    const pki = await makeTestPki(['*.bench.test', '127.0.0.1']);
    const upstream = spawn(process.execPath, ['--import', 'tsx', import.meta.filename, 'upstream'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    children.push(upstream);
    upstream.stdin.write(JSON.stringify({ certPem: pki.certPem, keyPem: pki.keyPem }) + '\n');
    const upstreamPort = Number(await firstLine(upstream));

    // airlock's proxy as the container runs it: the esbuild bundle under plain node.
    const built = spawnSync(process.execPath, [join(import.meta.dirname, '..', 'scripts', 'bundle.mjs')], {
      env: { ...process.env, AIRLOCK_BUNDLE_OUT: work },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    if (built.status !== 0) throw new Error('bundling the proxy failed');
    const bundle = join(work, 'proxy-bundle', 'airlock-proxy.mjs');
    const runCa = await generateRunCa();
    const config: ProxyConfig = {
      version: 1,
      allowlist: { domains: [...AIRLOCK_FIRST.listed, '*.bench.test'], url_prefixes: [] },
      ca: runCa,
      sandboxAddress: '127.0.0.1',
      listen: { host: '127.0.0.1', http: 0, https: 0, dns: 0 },
      upstream: {
        dns: [],
        hosts: Object.fromEntries(HOSTS.map((h) => [h, `127.0.0.1:${upstreamPort}`])),
        caPem: pki.caPem,
        connectTimeoutMs: 10_000,
      },
      credentials: { masked: [], signing: [] },
      run: { id: 'bench', policySha256: '' },
    };
    const startAirlock = async (name: string, flags: string[]): Promise<Target> => {
      const proxy = spawn(process.execPath, [...flags, bundle], { stdio: ['pipe', 'pipe', 'inherit'] });
      children.push(proxy);
      proxy.stdin.write(encodeProxyConfig(config));
      const ready = await firstLine(proxy, READY_LINE_PREFIX);
      const ports = JSON.parse(ready.slice(READY_LINE_PREFIX.length)) as { https: number };
      return { name, port: ports.https, ca: runCa.certPem, pid: proxy.pid! };
    };

    const direct: Target = { name: 'direct', port: upstreamPort, ca: pki.caPem };
    const airlock = await startAirlock('airlock', PROXY_NODE_FLAGS);

    let mitm: Target | null = null;
    let mitmLabel = 'mitmproxy: not available';
    const mitmdump = ONLY ? null : ensureMitmproxy();
    if (mitmdump) {
      const confdir = join(work, 'mitm');
      await writeFile(join(work, 'upstream-ca.pem'), pki.caPem);
      const port = await freePort();
      const child = spawn(
        mitmdump,
        mitmdumpReverseArgs({
          upstream: `127.0.0.1:${upstreamPort}`,
          listen: { host: '127.0.0.1', port },
          confdir,
          upstreamCa: join(work, 'upstream-ca.pem'),
        }),
        { stdio: ['ignore', 'ignore', 'inherit'] },
      );
      children.push(child);
      await waitForPort(port, 30_000);
      const caFile = join(confdir, 'mitmproxy-ca-cert.pem');
      mitm = { name: 'mitmproxy', port, ca: await readFile(caFile, 'utf8'), pid: child.pid! };
      mitmLabel = `mitmproxy ${mitmVersion(mitmdump)} (mitmdump, reverse mode, no addon)`;
    }

    if (ONLY) {
      process.stdout.write(JSON.stringify(await measure(ONLY === 'direct' ? direct : airlock, AIRLOCK_FIRST)) + '\n');
      return;
    }
    const directFigures = await measure(direct, firstHostsAt(4));
    const airlockFigures = await measure(airlock, AIRLOCK_FIRST);
    const mitmFigures = mitm ? await measure(mitm, firstHostsAt(36)) : null;
    // The same proxy with node's default GC settings: the memory/throughput trade-off the image's flags make.
    const tuned = await startAirlock('airlock (default GC)', DEFAULT_GC_FLAGS);
    await closedLoop(tuned, 8, 1000, true);
    const tunedRps = (await closedLoop(tuned, KEEPALIVE_CONCURRENCY, PHASE_MS, true)).count / (PHASE_MS / 1000);
    const tunedRss = await peakRssUnderLoad(tuned, tuned.pid!);

    const cpu = spawnSync('sh', ['-c', "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], {
      encoding: 'utf8',
    }).stdout.trim();
    const meta = [
      `Measured ${new Date().toISOString().slice(0, 10)} with \`npm run bench:proxy\` on loopback: ${cpu || 'unknown CPU'}, ` +
        `Node ${process.version}, ${mitmLabel}. Upstream: a Node HTTPS server in its own process (64-byte body; ` +
        `large download streamed). Client: Node's https in the bench process, TLS verified everywhere.`,
      `Each phase runs ${PHASE_MS / 1000} s; "first request to a new host" is a new TLS connection to a host name the ` +
        `proxy has not connected to: airlock mints leaves for names its allowlist lists exactly, and one ` +
        `\`*.bench.test\` leaf for its wildcard pattern, when it starts; either way the proxy also opens its first ` +
        `upstream connection to that name. The machine is shared and was busy (load average ${loadAverage()}), so ` +
        `absolute figures vary between runs (keep-alive requests/s by up to 2×); ratios within one run are the comparable figures.`,
    ].join(' ');
    const tunedNote = [
      '',
      `The airlock column runs node with the proxy image's flags \`${PROXY_NODE_FLAGS.join(' ')}\` (smaller young ` +
        `generation, earlier major GCs). With node's default GC settings the same proxy ran ` +
        `${tunedRps.toFixed(0)} keep-alive requests/s with a peak RSS of ${tunedRss.toFixed(0)} MB at ` +
        `${RSS_CONCURRENCY} connections.`,
    ].join('\n');
    const markdown = table(directFigures, airlockFigures, mitmFigures, meta) + tunedNote + '\n\n' + READING + '\n';
    process.stdout.write(markdown + '\n');
    await writeSection(markdown);
    process.stderr.write('bench: written to docs/benchmarks.md\n');
  } finally {
    for (const child of children) {
      child.stdin?.end();
      child.kill('SIGTERM');
    }
    await rm(work, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'upstream') await runUpstream();
else await main();
