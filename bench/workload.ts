/**
 * `npm run bench:workload`: what a CI job feels. `npm ci` of a project whose lockfile names 100 tarballs, and
 * `pip install` of 30 wheels from a PEP 503 index, each run in the airlock sandbox (through the proxy) and in a plain
 * container on the registry's bridge ("direct"): same image, same Node/npm and pip (the host's, mounted read-only),
 * a fresh workspace and an empty package cache every time. The registries are generated (bench/real/registry.ts)
 * and served by the upstream container: nothing is downloaded at bench time. Rounds are interleaved; the ratio is
 * taken within a round and the table shows medians. Writes the "Workloads" section of docs/benchmarks.md.
 *
 *   npm run bench:workload [-- --rounds N --no-write]
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, readdirSync, realpathSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { generateNpmRegistry, generatePythonIndex } from './real/registry.js';
import {
  airlockRun,
  airlockWorkspace,
  BENCH_MOUNT,
  ensureDebianPackages,
  loadAverage,
  median,
  openTopology,
  plainContainer,
  runClient,
  say,
  writeDocSection,
  type Topology,
} from './real/topology.js';

const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '3' }, 'no-write': { type: 'boolean', default: false } },
});
const ROUNDS = Number(values.rounds);
const NPM_IN_CONTAINER = '/opt/npm';
const WORKSPACE = '/workspace';

/** Times the command inside the container, so the figure excludes container (and proxy) start-up. */
function timedInContainer(command: string[]): string[] {
  return [
    'sh',
    '-c',
    'a=$(date +%s%N); "$@"; rc=$?; b=$(date +%s%N); echo "BENCH-COMMAND-MS $(( (b - a) / 1000000 ))"; exit $rc',
    'sh',
    ...command,
  ];
}

interface Workload {
  name: string;
  /** Files of a fresh workspace. */
  files: Record<string, string>;
  command: string[];
  /** Checks the workspace after a run: the install really happened. */
  verify(workspace: string): string | null;
}

function hostNpmDir(): string {
  const cli = realpathSync(spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim());
  return dirname(dirname(cli));
}

async function workloads(served: string): Promise<Workload[]> {
  const npm = await generateNpmRegistry(served, 'https://registry.bench.test/npm/');
  const python = await generatePythonIndex(served);
  const count = (dir: string, prefix: string) => {
    try {
      return readdirSync(dir).filter((f) => f.startsWith(prefix)).length;
    } catch {
      return 0;
    }
  };
  return [
    {
      name: `\`npm ci\`, ${npm.packages} packages`,
      files: { 'package.json': npm.packageJson, 'package-lock.json': npm.lockfile },
      command: [
        'node',
        `${NPM_IN_CONTAINER}/bin/npm-cli.js`,
        'ci',
        '--no-audit',
        '--no-fund',
        '--no-update-notifier',
        '--ignore-scripts',
        '--loglevel=error',
        '--cache=/tmp/npm-cache',
        '--registry=https://registry.bench.test/npm/',
      ],
      verify: (ws) => {
        const n = count(join(ws, 'node_modules'), 'bench-pkg-');
        return n === npm.packages ? null : `node_modules holds ${n} of ${npm.packages} packages`;
      },
    },
    {
      name: `\`pip install\`, ${python.wheels} wheels`,
      files: {},
      command: [
        'python3',
        `${BENCH_MOUNT}/pip.whl/pip`,
        'install',
        '--quiet',
        '--no-cache-dir',
        '--disable-pip-version-check',
        '--no-input',
        '--index-url=https://pypi.bench.test/simple/',
        `--target=${WORKSPACE}/site`,
        ...python.requirements,
      ],
      verify: (ws) => {
        const n = count(join(ws, 'site'), 'bench_wheel_') / 2;
        return n === python.wheels ? null : `site holds ${n} of ${python.wheels} wheels (package + dist-info each)`;
      },
    },
  ];
}

interface Timing {
  commandMs: number;
  wallMs: number;
}

async function runOnce(
  topology: Topology,
  workload: Workload,
  where: 'direct' | 'sandbox',
  template: string,
): Promise<Timing> {
  const ws = join(topology.work, `ws-${Date.now()}-${Math.random().toString(16).slice(2, 8)}`);
  await cp(template, ws, { recursive: true });
  try {
    const npmMount = `${hostNpmDir()}:${NPM_IN_CONTAINER}:ro`;
    const argv =
      where === 'sandbox'
        ? airlockRun(topology, [npmMount], timedInContainer(workload.command))
        : plainContainer(
            topology,
            {
              address: topology.upstreamIp,
              env: { NODE_EXTRA_CA_CERTS: `${BENCH_MOUNT}/ca.pem`, PIP_CERT: `${BENCH_MOUNT}/ca.pem` },
              mounts: [npmMount, `${ws}:${WORKSPACE}`],
              workdir: WORKSPACE,
            },
            timedInContainer(workload.command),
          );
    const run = await runClient(argv, ws);
    const line = run.stdout.find((l) => l.startsWith('BENCH-COMMAND-MS '));
    if (run.code !== 0 || !line) {
      throw new Error(`${workload.name} (${where}) exited ${run.code}: ${run.stderrTail}\n${run.stdout.join('\n')}`);
    }
    const wrong = workload.verify(ws);
    if (wrong) throw new Error(`${workload.name} (${where}): ${wrong}`);
    return { commandMs: Number(line.slice('BENCH-COMMAND-MS '.length)), wallMs: run.ms };
  } finally {
    await rm(ws, { recursive: true, force: true });
  }
}

/** A fresh workspace per run, copied from one template: the policy airlock reads and the workload's files. */
async function template(topology: Topology, workload: Workload, index: number): Promise<string> {
  const dir = join(topology.work, `template-${index}`);
  await mkdir(dir, { recursive: true });
  await airlockWorkspace(topology, dir);
  for (const [name, content] of Object.entries(workload.files)) await writeFile(join(dir, name), content);
  return dir;
}

async function main(): Promise<void> {
  ensureDebianPackages([{ name: 'python3-pip-whl', provides: '/usr/share/python-wheels' }]);
  const started = new Date();
  const loadAtStart = loadAverage();
  const served = await mkdtemp(join(tmpdir(), 'airlock-bench-served-'));
  try {
    say('generating the npm registry and the Python index');
    const list = await workloads(served);
    const topology = await openTopology(served);
    try {
      const wheels = readdirSync('/usr/share/python-wheels').filter((f) => /^pip-.*\.whl$/.test(f));
      if (!wheels[0]) throw new Error('no pip wheel in /usr/share/python-wheels (apt-get install python3-pip-whl)');
      copyFileSync(join('/usr/share/python-wheels', wheels[0]), join(topology.benchDir, 'pip.whl'));
      const templates = await Promise.all(list.map((w, i) => template(topology, w, i)));
      const results = list.map(() => ({ direct: [] as Timing[], sandbox: [] as Timing[] }));
      for (let round = 0; round < ROUNDS; round++) {
        for (const [i, workload] of list.entries()) {
          const order: Array<'direct' | 'sandbox'> = round % 2 === 0 ? ['direct', 'sandbox'] : ['sandbox', 'direct'];
          for (const where of order) {
            say(`round ${round + 1}/${ROUNDS}: ${workload.name}, ${where} (load average ${loadAverage()})`);
            const t = await runOnce(topology, workload, where, templates[i]!);
            say(`  command ${t.commandMs.toFixed(0)} ms, whole run ${t.wallMs.toFixed(0)} ms`);
            results[i]![where].push(t);
          }
        }
      }
      const rows = list.map((w, i) => {
        const r = results[i]!;
        const med = (where: 'direct' | 'sandbox', key: keyof Timing) => median(r[where].map((t) => t[key]));
        const ratio = (key: keyof Timing) => median(r.sandbox.map((t, k) => t[key] / r.direct[k]![key]));
        return {
          name: w.name,
          cells: [
            med('direct', 'commandMs'),
            med('sandbox', 'commandMs'),
            ratio('commandMs'),
            med('direct', 'wallMs'),
            med('sandbox', 'wallMs'),
            ratio('wallMs'),
          ],
          perRound: r.sandbox.map((t, k) => (t.commandMs / r.direct[k]!.commandMs).toFixed(2)).join(', '),
        };
      });
      const s = (ms: number) => (ms / 1000).toFixed(2);
      const x = (r: number) => `${r.toFixed(2)}×`;
      const markdown = [
        `\`npm run bench:workload -- --rounds ${ROUNDS}\` — ${started.toISOString().slice(0, 10)}, rootful Podman, ` +
          `${cpus().length} CPUs, Node ${process.version}, load average ${loadAtStart} at the start and ${loadAverage()} ` +
          'at the end (shared machine: the ratios within a round are the comparable figures).',
        '',
        'Each workload runs in the airlock sandbox (every request through the proxy container) and in a plain ' +
          "container on the registry's bridge (direct), same image, the host's Node/npm and pip mounted read-only, a " +
          'fresh workspace and an empty package cache each time; the registries are generated and served by a Node ' +
          'HTTPS server in a container on a bridge (bench/real/registry.ts). "command" is timed inside the container; ' +
          '"whole run" is `airlock run` against `podman run --rm` end to end, start-up and teardown included.',
        '',
        `| workload (median of ${ROUNDS} rounds) | command direct, s | command sandbox, s | sandbox / direct | whole run direct, s | whole run sandbox, s | sandbox / direct |`,
        '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
        ...rows.map(
          (r) =>
            `| ${r.name} | ${s(r.cells[0]!)} | ${s(r.cells[1]!)} | ${x(r.cells[2]!)} | ${s(r.cells[3]!)} | ${s(r.cells[4]!)} | ${x(r.cells[5]!)} |`,
        ),
        '',
        'Target: the command at most 1.15× direct.',
        '',
        ...rows.map(
          (r) =>
            `- ${r.name}: ${x(r.cells[2]!)} (rounds: ${r.perRound}) — ${r.cells[2]! <= 1.15 ? 'met' : '**not met**'}`,
        ),
      ].join('\n');
      process.stdout.write(`${markdown}\n`);
      if (!values['no-write']) {
        await writeDocSection('Workloads', markdown);
        say('written to docs/benchmarks.md');
      }
    } finally {
      await topology.close();
    }
  } finally {
    await rm(served, { recursive: true, force: true });
  }
}

await main();
