/**
 * `npm run bench:topology`: the proxy where users meet it. The same load generator runs in an airlock sandbox (its
 * requests go through the real proxy container), in a plain container on the upstream's bridge ("direct"), and in
 * plain containers talking to Debian's nginx and to mitmproxy, each a TLS-terminating reverse proxy in a container
 * placed like airlock's, two networks away from the same upstream (bench/real/topology.ts draws the picture). Rounds are
 * interleaved, so machine noise hits every target alike; each ratio is taken within a round, the table shows
 * medians over rounds. Writes the "Proxy in the real topology" section of docs/benchmarks.md.
 *
 *   npm run bench:topology [-- --rounds N --phase-ms MS --only airlock,direct --phases keepalive,rss --no-write]
 */
import { mkdir } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { LoadJob, LoadResult } from './real/load-client.js';
import {
  airlockRun,
  airlockWorkspace,
  BENCH_MOUNT,
  BENCH_NAMES,
  acceptedConnections,
  cpuMs,
  cpuSplitMs,
  loadAverage,
  median,
  openTopology,
  plainContainer,
  proxyPidOf,
  rssMB,
  runClient,
  say,
  startAirlockOnHost,
  startMitmproxy,
  startNginx,
  upstreamPid,
  writeDocSection,
  type ComparisonProxy,
  type Topology,
} from './real/topology.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    'phase-ms': { type: 'string', default: '5000' },
    only: { type: 'string' },
    phases: { type: 'string' },
    'no-write': { type: 'boolean', default: false },
  },
});
const ROUNDS = Number(values.rounds);
const PHASE_MS = Number(values['phase-ms']);
const MB = 1024 * 1024;
const JOB: Omit<LoadJob, 'port'> = {
  hosts: BENCH_NAMES,
  phaseMs: PHASE_MS,
  keepAliveConnections: 32,
  newConnectionConcurrency: 16,
  downloadBytes: 64 * MB,
  downloads: 4,
  rssConnections: 200,
  rssMs: 3000,
  ...(values.phases ? { phases: values.phases.split(',') as NonNullable<LoadJob['phases']> } : {}),
};

interface Figures extends LoadResult {
  /** CPU the proxy process spent per 1,000 keep-alive requests, ms. */
  proxyCpuPer1k: number;
  /** The part of proxyCpuPer1k spent in the kernel (system time), %. */
  proxySystemShare: number;
  upstreamCpuPer1k: number;
  /** TCP connections the upstream accepted during the keep-alive phase (pooling works: about the client's count). */
  upstreamConnections: number;
  peakRssMB: number;
}

interface Target {
  name: 'direct' | 'airlock' | 'airlock-host' | 'nginx' | 'mitmproxy';
  argv: string[];
  cwd: string;
  /** The proxy process to account, once the client has started (null for direct). */
  proxyPid: (clientPid: number) => number | null;
}

async function measure(target: Target, topology: Topology, upstream: number): Promise<Figures> {
  let proxy: number | null = null;
  let cpuAtStart = { proxy: NaN, upstream: NaN };
  let splitAtStart = cpuSplitMs(null);
  let proxySystemShare = NaN;
  let acceptedAtStart = NaN;
  let upstreamConnections = NaN;
  const cpu = { proxy: NaN, upstream: NaN };
  let peakRss = NaN;
  let sampler: NodeJS.Timeout | undefined;
  const run = await runClient(target.argv, target.cwd, (line, clientPid) => {
    const m = /^BENCH-MARK (\w+) (start|end)$/.exec(line);
    if (!m) return;
    proxy ??= target.proxyPid(clientPid);
    if (m[1] === 'keepalive' && m[2] === 'start') {
      cpuAtStart = { proxy: cpuMs(proxy), upstream: cpuMs(upstream) };
      splitAtStart = cpuSplitMs(proxy);
      acceptedAtStart = acceptedConnections(upstream);
    }
    if (m[1] === 'keepalive' && m[2] === 'end') {
      upstreamConnections = acceptedConnections(upstream) - acceptedAtStart;
      const split = cpuSplitMs(proxy);
      const system = split.system - splitAtStart.system;
      proxySystemShare = (system / (system + split.user - splitAtStart.user)) * 100;
      cpu.proxy = cpuMs(proxy) - cpuAtStart.proxy;
      cpu.upstream = cpuMs(upstream) - cpuAtStart.upstream;
    }
    if (m[1] === 'rss' && m[2] === 'start') {
      peakRss = rssMB(proxy);
      sampler = setInterval(() => (peakRss = Math.max(peakRss, rssMB(proxy))), 100);
    }
    if (m[1] === 'rss' && m[2] === 'end') clearInterval(sampler);
  });
  clearInterval(sampler);
  const resultLine = run.stdout.find((l) => l.startsWith('BENCH-RESULT '));
  if (run.code !== 0 || !resultLine) {
    throw new Error(
      `${target.name}: the client exited ${run.code}: ${run.stderrTail}\n${run.stdout.slice(-5).join('\n')}`,
    );
  }
  const result = JSON.parse(resultLine.slice('BENCH-RESULT '.length)) as LoadResult;
  if (result.errors > 0) say(`${target.name}: ${result.errors} errors, first: ${result.firstError}`);
  const requests = (result.keepAliveRps * PHASE_MS) / 1000;
  return {
    ...result,
    proxyCpuPer1k: (cpu.proxy / requests) * 1000,
    proxySystemShare,
    upstreamCpuPer1k: (cpu.upstream / requests) * 1000,
    upstreamConnections,
    peakRssMB: peakRss,
  };
}

function targets(topology: Topology, workspace: string, proxies: ComparisonProxy[]): Target[] {
  const job = (port: number) => JSON.stringify({ ...JOB, port } satisfies LoadJob);
  const client = ['node', `${BENCH_MOUNT}/load-client.mjs`];
  const through = (proxy: ComparisonProxy): Target => ({
    name: proxy.name as Target['name'],
    argv: plainContainer(
      topology,
      { address: proxy.address, network: proxy.network, env: { NODE_EXTRA_CA_CERTS: proxy.caInContainer } },
      [...client, job(proxy.port)],
    ),
    cwd: topology.work,
    proxyPid: () => proxy.pid(),
  });
  return [
    {
      name: 'direct',
      argv: plainContainer(
        topology,
        { address: topology.upstreamIp, env: { NODE_EXTRA_CA_CERTS: `${BENCH_MOUNT}/ca.pem` } },
        [...client, job(443)],
      ),
      cwd: topology.work,
      proxyPid: () => null,
    },
    {
      name: 'airlock',
      argv: airlockRun(topology, [], [...client, job(443)]),
      cwd: workspace,
      proxyPid: (clientPid) => proxyPidOf(clientPid),
    },
    ...proxies.map(through),
  ];
}

const ROWS: Array<[string, keyof Figures, number]> = [
  [`keep-alive requests/s (${JOB.keepAliveConnections} connections)`, 'keepAliveRps', 0],
  ['p50 latency, ms (keep-alive)', 'p50', 2],
  ['p99 latency, ms (keep-alive)', 'p99', 2],
  [`new TLS connections/s (${JOB.newConnectionConcurrency} at a time)`, 'newConnPerSec', 0],
  [`${JOB.downloadBytes / MB} MB bodies, MB/s (${JOB.downloads} in a row, one connection)`, 'downloadMBps', 0],
  ['proxy CPU per 1,000 keep-alive requests, ms', 'proxyCpuPer1k', 0],
  ['proxy CPU in the kernel (system time), % (keep-alive)', 'proxySystemShare', 0],
  ['upstream CPU per 1,000 keep-alive requests, ms', 'upstreamCpuPer1k', 0],
  ['upstream connections opened during the keep-alive phase', 'upstreamConnections', 0],
  [`proxy peak RSS, MB (${JOB.rssConnections} connections)`, 'peakRssMB', 0],
];

function fmt(n: number, digits: number): string {
  return Number.isNaN(n) ? '–' : n.toFixed(digits);
}

async function main(): Promise<void> {
  const started = new Date();
  const loadAtStart = loadAverage();
  const topology = await openTopology(null);
  const proxies: ComparisonProxy[] = [];
  try {
    const workspace = join(topology.work, 'workspace');
    await mkdir(workspace, { recursive: true });
    await airlockWorkspace(topology, workspace);
    const only = values.only?.split(',');
    const wanted = (name: string) => !only || only.includes(name);
    // airlock's proxy program on the host is a diagnostic (see startAirlockOnHost): only when asked for by name.
    if (only?.includes('airlock-host')) proxies.push(await startAirlockOnHost(topology));
    if (wanted('nginx')) proxies.push(await startNginx(topology));
    if (wanted('mitmproxy')) proxies.push(await startMitmproxy(topology));
    const all = targets(topology, workspace, proxies).filter((t) => wanted(t.name));
    const upstream = upstreamPid(topology);
    const rounds: Array<Map<string, Figures>> = [];
    for (let round = 0; round < ROUNDS; round++) {
      const figures = new Map<string, Figures>();
      // Rotated each round so no target always runs right after the same neighbour.
      const order = all.map((_, i) => all[(i + round) % all.length]!);
      for (const target of order) {
        say(`round ${round + 1}/${ROUNDS}: ${target.name} (load average ${loadAverage()})`);
        figures.set(target.name, await measure(target, topology, upstream));
        say(`  ${JSON.stringify(figures.get(target.name))}`);
      }
      rounds.push(figures);
    }
    const names = all.map((t) => t.name);
    const med = (name: string, key: keyof Figures) => median(rounds.map((r) => Number(r.get(name)?.[key])));
    /** Median over rounds of a ratio taken within each round. */
    const ratio = (name: string, key: keyof Figures, base: string) =>
      median(rounds.map((r) => Number(r.get(name)?.[key]) / Number(r.get(base)?.[key])));
    const ratioColumns: Array<[string, string]> = [];
    if (names.includes('airlock') && names.includes('direct')) ratioColumns.push(['airlock', 'direct']);
    if (names.includes('airlock') && names.includes('airlock-host')) ratioColumns.push(['airlock', 'airlock-host']);
    if (names.includes('nginx') && names.includes('direct')) ratioColumns.push(['nginx', 'direct']);
    if (names.includes('airlock') && names.includes('nginx')) ratioColumns.push(['airlock', 'nginx']);
    if (names.includes('airlock') && names.includes('mitmproxy')) ratioColumns.push(['airlock', 'mitmproxy']);
    const header = [
      `| metric (median of ${ROUNDS} rounds) | ${names.join(' | ')} | ${ratioColumns.map(([a, b]) => `${a} / ${b}`).join(' | ')} |`,
      `| --- |${names.map(() => ' ---: |').join('')}${ratioColumns.map(() => ' ---: |').join('')}`,
    ];
    const lines = ROWS.map(([label, key, digits]) => {
      const cells = names.map((n) => fmt(med(n, key), digits));
      const ratios = ratioColumns.map(([a, b]) => {
        const r = ratio(a, key, b);
        return Number.isFinite(r) ? `${r.toFixed(2)}×` : '–';
      });
      return `| ${label} | ${cells.join(' | ')} | ${ratios.join(' | ')} |`;
    });
    const perRound = (a: string, b: string, key: keyof Figures) =>
      rounds.map((r) => (Number(r.get(a)?.[key]) / Number(r.get(b)?.[key])).toFixed(2)).join(', ');
    const targetsMet: string[] = [];
    const check = (ok: boolean) => (ok ? 'met' : '**not met**');
    if (names.includes('airlock') && names.includes('direct')) {
      const rps = ratio('airlock', 'keepAliveRps', 'direct');
      const mbps = ratio('airlock', 'downloadMBps', 'direct');
      targetsMet.push(
        `- ≥ 60% of direct keep-alive requests/s: ${(rps * 100).toFixed(0)}% (rounds: ${perRound('airlock', 'direct', 'keepAliveRps')}) — ${check(rps >= 0.6)}`,
        `- ≥ 50% of direct MB/s: ${(mbps * 100).toFixed(0)}% — ${check(mbps >= 0.5)}`,
      );
    }
    if (names.includes('airlock') && names.includes('nginx')) {
      const r = ratio('airlock', 'keepAliveRps', 'nginx');
      targetsMet.push(`- ≥ 70% of nginx keep-alive requests/s: ${(r * 100).toFixed(0)}% — ${check(r >= 0.7)}`);
    }
    if (names.includes('airlock') && names.includes('mitmproxy')) {
      const r = ratio('airlock', 'keepAliveRps', 'mitmproxy');
      targetsMet.push(`- ≥ 5× mitmproxy keep-alive requests/s: ${r.toFixed(1)}× — ${check(r >= 5)}`);
    }
    if (names.includes('airlock')) {
      const rss = med('airlock', 'peakRssMB');
      targetsMet.push(
        `- ≤ 100 MB proxy RSS at ${JOB.rssConnections} connections: ${rss.toFixed(0)} MB — ${check(rss <= 100)}`,
      );
    }
    const markdown = [
      `\`npm run bench:topology -- --rounds ${ROUNDS} --phase-ms ${PHASE_MS}\` — ${started.toISOString().slice(0, 10)}, ` +
        `rootful Podman, ${cpus().length} CPUs, Node ${process.version}, load average ${loadAtStart} at the start and ` +
        `${loadAverage()} at the end (the machine is shared: absolute figures are noise, the ratios within a round are ` +
        `the comparable figures).`,
      '',
      'Topology: the load generator (Node https, TLS verified) runs in the airlock sandbox, whose only peer is the ' +
        'proxy container; "direct" is the same generator in a plain container on the upstream\'s bridge; nginx (Debian, ' +
        'one worker, keep-alive upstream pool, upstream TLS verified, bodies streamed, access log on) and mitmproxy ' +
        "(Debian, mitmdump, reverse mode, no addon) run in containers placed like airlock's proxy (a front network " +
        'for the generator, a back network towards the upstream, the host routing between bridges), because ' +
        'containers here share one CPU weight against every host process and a proxy on the host would be measured ' +
        'with an advantage. The upstream is a Node HTTPS server in its own container (64-byte body; large bodies ' +
        `streamed). Each phase runs ${PHASE_MS / 1000} s; the airlock column is measured inside one \`airlock run\` ` +
        "(start-up is the Startup section's business). CPU is read from /proc for the proxy process (nginx: its worker).",
      '',
      ...header,
      ...lines,
      '',
      'Targets:',
      '',
      ...targetsMet,
    ].join('\n');
    process.stdout.write(`${markdown}\n`);
    if (!values['no-write'] && !only && !values.phases) {
      await writeDocSection('Proxy in the real topology', markdown);
      say('written to docs/benchmarks.md');
    }
  } finally {
    for (const p of proxies) await p.close();
    await topology.close();
  }
}

await main();
