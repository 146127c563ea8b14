/**
 * Load through the proxy's HTTPS listener: many concurrent keep-alive connections and a fixed number of requests,
 * all on loopback. The proxy is the real container program (src/proxy/main.ts: config on stdin, event lines on
 * stdout) in its own process, and so are the upstream and the load client, so RSS is the proxy's alone and the three
 * do not share an event loop. Each process gets a soft fd limit high enough for its connections.
 *
 * `npx tsx bench/proxy-load.ts [connections] [requests]` prints the figures (default 1,000 and 100,000: minutes). The
 * test suite keeps a bounded correctness version (test/integration/proxy-load.test.ts: 200 connections, refused
 * requests in the mix, live heap compared between batches) that runs in seconds.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { generateRunCa } from '../src/cli/session/ca.js';
import { decodeProxyLine, encodeProxyConfig, READY_LINE_PREFIX, type ProxyConfig } from '../src/protocol/proxy-wire.js';
import { makeTestPki } from '../test/helpers/tls-fixtures.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const SELF = fileURLToPath(import.meta.url);
const HOST = 'load.test';
const BODY = Buffer.alloc(64, 'x');

export interface LoadOptions {
  connections: number;
  requests: number;
  /** Soft fd limit for each of the three processes; must not exceed the hard limit. */
  fdLimit?: number;
  progress?: (line: string) => void;
}

export interface LoadFigures {
  connections: number;
  requests: number;
  completed: number;
  errors: number;
  /** Non-200 answers, with a few samples of what went wrong. */
  failures: number;
  failureSamples: string[];
  /** Most client sockets open at once. */
  peakClientSockets: number;
  upstreamConnections: number;
  upstreamRequests: number;
  /** `allowed` events the proxy logged on stdout. */
  allowedEvents: number;
  seconds: number;
  requestsPerSecond: number;
  rssMB: { start: number; half: number; end: number; peakFirstHalf: number; peakSecondHalf: number };
  proxyExitCode: number | null;
}

// ---------- child processes ----------

function spawnWithFdLimit(fdLimit: number, args: string[]): ChildProcessWithoutNullStreams {
  // "$0" "$@" carries node's argv through the shell untouched: nothing is interpolated into the script.
  return spawn('bash', ['-c', `ulimit -n ${fdLimit} && exec "$0" "$@"`, process.execPath, ...args], {
    cwd: REPO,
    stdio: 'pipe',
  });
}

function firstLine(child: ChildProcessWithoutNullStreams, prefix: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      if (line.startsWith(prefix)) resolve(line.slice(prefix.length));
    });
    child.on('close', (code) => reject(new Error(`child exited ${code} before "${prefix}": ${stderr}`)));
  });
}

function rssMB(pid: number): number {
  try {
    const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb ? Number(kb) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

export async function runProxyLoad(options: LoadOptions): Promise<LoadFigures> {
  const fdLimit = options.fdLimit ?? Math.max(4096, options.connections * 3 + 256);
  const say = options.progress ?? (() => undefined);
  const pki = await makeTestPki([HOST]);
  const tsx = ['--import', 'tsx'];

  const upstream = spawnWithFdLimit(fdLimit, [...tsx, SELF, 'upstream']);
  const upstreamPort = firstLine(upstream, 'PORT ');
  upstream.stdin.write(JSON.stringify({ certPem: pki.certPem, keyPem: pki.keyPem }) + '\n');
  const port = Number(await upstreamPort);

  const ca = await generateRunCa();
  const config: ProxyConfig = {
    version: 1,
    allowlist: { domains: [HOST], url_prefixes: [] },
    ca,
    sandboxAddress: '10.199.1.100',
    listen: { host: '127.0.0.1', http: 0, https: 0, dns: 0 },
    upstream: { dns: [], hosts: { [HOST]: `127.0.0.1:${port}` }, caPem: pki.caPem, connectTimeoutMs: 10_000 },
    credentials: { masked: [], signing: [] },
    run: { id: 'load', policySha256: '00' },
    log: { stdout: true },
  };
  // The bundle exactly as the build ships it into the proxy image, so RSS is not inflated by a TypeScript loader.
  const work = await mkdtemp(join(tmpdir(), 'airlock-load-'));
  const bundling = spawnSync(process.execPath, [join(REPO, 'scripts/bundle.mjs')], {
    env: { ...process.env, AIRLOCK_BUNDLE_OUT: work },
    encoding: 'utf8',
  });
  if (bundling.status !== 0) throw new Error(`scripts/bundle.mjs failed: ${bundling.stderr}`);
  const bundle = join(work, 'proxy-bundle/airlock-proxy.mjs');
  const proxy = spawnWithFdLimit(fdLimit, [bundle]);
  let allowedEvents = 0;
  const proxyLines = createInterface({ input: proxy.stdout });
  proxyLines.on('line', (line) => {
    const decoded = decodeProxyLine(line);
    if (decoded.kind === 'event' && decoded.record.decision === 'allowed') allowedEvents++;
  });
  const proxyExit = new Promise<number | null>((resolve) => proxy.on('close', (code) => resolve(code)));
  const ready = firstLine(proxy, READY_LINE_PREFIX);
  proxy.stdin.write(encodeProxyConfig(config));
  const proxyPort = (JSON.parse(await ready) as { https: number }).https;
  const pid = proxy.pid!;
  say(`proxy ${pid} ready on 127.0.0.1:${proxyPort}, upstream on ${port}`);

  const start = rssMB(pid);
  let phase: 'first' | 'second' = 'first';
  const peaks = { first: start, second: 0 };
  const sampler = setInterval(() => (peaks[phase] = Math.max(peaks[phase], rssMB(pid))), 100);
  let half = NaN;

  const client = spawnWithFdLimit(fdLimit, [...tsx, SELF, 'client']);
  const clientLines = createInterface({ input: client.stdout });
  let clientErr = '';
  client.stderr.on('data', (d: Buffer) => (clientErr = (clientErr + d.toString()).slice(-4000)));
  const done = new Promise<string>((resolve, reject) => {
    clientLines.on('line', (line) => {
      if (line === 'HALF') {
        half = rssMB(pid);
        peaks.first = Math.max(peaks.first, half);
        phase = 'second';
        say(`half way: proxy RSS ${half.toFixed(0)} MB`);
      } else if (line.startsWith('DONE ')) resolve(line.slice(5));
      else say(line);
    });
    client.on('close', (code) => reject(new Error(`load client exited ${code}: ${clientErr}`)));
  });
  client.stdin.end(
    JSON.stringify({ port: proxyPort, ca: ca.certPem, connections: options.connections, requests: options.requests }) +
      '\n',
  );
  const result = JSON.parse(await done) as ClientResult;
  const end = rssMB(pid);
  clearInterval(sampler);
  peaks.second = Math.max(peaks.second, end);

  proxy.stdin.end();
  const proxyExitCode = await proxyExit;
  await rm(work, { recursive: true, force: true });
  const upstreamStats = firstLine(upstream, 'STATS ');
  upstream.stdin.end();
  const { connections: upstreamConnections, requests: upstreamRequests } = JSON.parse(await upstreamStats) as {
    connections: number;
    requests: number;
  };
  return {
    connections: options.connections,
    requests: options.requests,
    completed: result.completed,
    errors: result.errors,
    failures: result.failures,
    failureSamples: result.samples,
    peakClientSockets: result.peakSockets,
    upstreamConnections,
    upstreamRequests,
    allowedEvents,
    seconds: result.ms / 1000,
    requestsPerSecond: result.completed / (result.ms / 1000),
    rssMB: { start, half, end, peakFirstHalf: peaks.first, peakSecondHalf: peaks.second },
    proxyExitCode,
  };
}

// ---------- roles ----------

async function readConfigLine<T>(): Promise<T> {
  const lines = createInterface({ input: process.stdin });
  const first = await lines[Symbol.asyncIterator]().next();
  return JSON.parse(first.value as string) as T;
}

async function upstreamRole(): Promise<void> {
  const { certPem, keyPem } = await readConfigLine<{ certPem: string; keyPem: string }>();
  let connections = 0;
  let requests = 0;
  const server = https.createServer({ cert: certPem, key: keyPem, keepAliveTimeout: 120_000 }, (req, res) => {
    requests++;
    req.resume();
    res.writeHead(200, { 'Content-Length': BODY.length, 'Content-Type': 'text/plain' });
    res.end(BODY);
  });
  server.on('secureConnection', () => connections++);
  server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
    process.stdout.write(`PORT ${(server.address() as AddressInfo).port}\n`);
  });
  process.stdin.on('end', () => {
    process.stdout.write(`STATS ${JSON.stringify({ connections, requests })}\n`, () => process.exit(0));
  });
}

interface ClientResult {
  completed: number;
  errors: number;
  failures: number;
  samples: string[];
  peakSockets: number;
  ms: number;
}

async function clientRole(): Promise<void> {
  const { port, ca, connections, requests } = await readConfigLine<{
    port: number;
    ca: string;
    connections: number;
    requests: number;
  }>();
  const agent = new https.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections, ca });
  const result: ClientResult = { completed: 0, errors: 0, failures: 0, samples: [], peakSockets: 0, ms: 0 };
  const note = (what: string) => {
    if (result.samples.length < 5) result.samples.push(what);
  };
  const countSockets = () => {
    let open = 0;
    for (const list of [...Object.values(agent.sockets), ...Object.values(agent.freeSockets)])
      open += list?.length ?? 0;
    result.peakSockets = Math.max(result.peakSockets, open);
  };
  const sampler = setInterval(countSockets, 50);
  const one = () =>
    new Promise<void>((resolve) => {
      const req = https.request(
        { host: '127.0.0.1', port, servername: HOST, path: '/small', agent, headers: { Host: HOST } },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) result.completed++;
            else {
              result.failures++;
              note(`status ${res.statusCode}`);
            }
            resolve();
          });
          res.on('error', (e) => {
            result.errors++;
            note(e.message);
            resolve();
          });
        },
      );
      req.on('error', (e) => {
        result.errors++;
        note(e.message);
        resolve();
      });
      req.end();
    });
  let issued = 0;
  let halfSent = false;
  const started = performance.now();
  let lastReport = started;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (issued < requests) {
        issued++;
        await one();
        const answered = result.completed + result.failures + result.errors;
        if (!halfSent && answered >= requests / 2) {
          halfSent = true;
          countSockets();
          process.stdout.write('HALF\n');
        }
        if (performance.now() - lastReport > 5000) {
          lastReport = performance.now();
          process.stdout.write(`${answered} answered after ${((lastReport - started) / 1000).toFixed(0)} s\n`);
        }
      }
    }),
  );
  result.ms = performance.now() - started;
  clearInterval(sampler);
  agent.destroy();
  process.stdout.write(`DONE ${JSON.stringify(result)}\n`, () => process.exit(0));
}

// ---------- standalone ----------

async function standalone(): Promise<void> {
  const connections = Number(process.argv[2] ?? 1000);
  const requests = Number(process.argv[3] ?? 100_000);
  const f = await runProxyLoad({ connections, requests, progress: (l) => process.stderr.write(`load: ${l}\n`) });
  const rows: Array<[string, string]> = [
    ['concurrent keep-alive connections (peak client sockets)', `${f.connections} (${f.peakClientSockets})`],
    ['requests answered 200 / sent', `${f.completed} / ${f.requests}`],
    ['errors + non-200', `${f.errors + f.failures}`],
    ['wall time, s', f.seconds.toFixed(1)],
    ['requests/s', f.requestsPerSecond.toFixed(0)],
    ['upstream TLS connections', `${f.upstreamConnections}`],
    [
      'proxy RSS MB: start / at half / at end',
      `${f.rssMB.start.toFixed(0)} / ${f.rssMB.half.toFixed(0)} / ${f.rssMB.end.toFixed(0)}`,
    ],
    [
      'proxy peak RSS MB: first half / second half',
      `${f.rssMB.peakFirstHalf.toFixed(0)} / ${f.rssMB.peakSecondHalf.toFixed(0)}`,
    ],
  ];
  process.stdout.write(`| metric | value |\n| --- | ---: |\n${rows.map(([k, v]) => `| ${k} | ${v} |`).join('\n')}\n`);
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  const role = process.argv[2];
  if (role === 'upstream') await upstreamRole();
  else if (role === 'client') await clientRole();
  else await standalone();
}
