/**
 * Records one "world" (engine × version × rootless/rootful × cgroup version × runtime) as a fixture for the unit
 * tests: the engine's own `info` output, and what a bounded probe container observed about each cgroup limit
 * (test/helpers/limit-probe.ts) — so the tests check airlock's judgement from `info` against what the kernel did.
 *
 *   npx tsx scripts/record-engine-world.ts WORLD [--engine podman|docker] [--out DIR]
 *
 * Run it as the user the world is about (rootless: that user, with XDG_RUNTIME_DIR set). Writes
 * test/fixtures/engine-info/WORLD.json; see the README there for the format.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { release, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readHostLimits } from '../src/cli/engine/host-limits.js';
import { ENGINE_INFO_ARGS, readHostCgroupState } from '../src/cli/engine/engine-info.js';
import { ensureTestImage, TEST_IMAGE } from '../test/helpers/images.js';
import { LIMIT_PROBE, PROBE_LIMITS, readLimitProbe } from '../test/helpers/limit-probe.js';

const ROOT = resolve(import.meta.dirname, '..');
const { values, positionals } = parseArgs({
  options: { engine: { type: 'string', default: 'podman' }, out: { type: 'string' } },
  allowPositionals: true,
});
const world = positionals[0];
if (!world || !/^[a-z0-9][a-z0-9.-]*$/.test(world)) {
  process.stderr.write(
    'usage: record-engine-world.ts WORLD [--engine podman|docker] [--out DIR]   (WORLD: a-z, 0-9, ., -)\n',
  );
  process.exit(2);
}
const engine = values.engine === 'docker' ? 'docker' : 'podman';

function run(argv: string[]) {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', maxBuffer: 16 << 20 });
  return { code: r.status ?? 1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

const info = run([engine, ...ENGINE_INFO_ARGS[engine]]);
if (info.code !== 0) throw new Error(`${engine} info failed: ${info.stderr}`);
const raw = JSON.parse(info.stdout) as Record<string, unknown>;
// Identifiers of this machine are of no use to a test.
if (engine === 'podman') {
  const host = raw.host as Record<string, unknown> | undefined;
  if (host) host.hostname = 'recorded-host';
} else {
  for (const key of ['ID', 'Name', 'SystemTime']) if (key in raw) raw[key] = 'recorded';
}

await ensureTestImage(engine);
const host = readHostLimits();
const probe = run([
  engine,
  'run',
  '--rm',
  '--pull=never',
  '--network=none',
  `--pids-limit=${PROBE_LIMITS.pidsLimit}`,
  `--memory=${PROBE_LIMITS.memory}`,
  `--memory-swap=${PROBE_LIMITS.memory}`,
  `--cpus=${PROBE_LIMITS.cpus}`,
  `--ulimit=nofile=${host.nofile}:${host.nofile}`,
  `--ulimit=nproc=${host.nproc}:${host.nproc}`,
  TEST_IMAGE,
  'python3',
  '-c',
  LIMIT_PROBE,
]);
const outcome = readLimitProbe(probe.stdout);
if (!outcome) throw new Error(`the probe container failed (exit ${probe.code}): ${probe.stderr}`);

const osRelease = readFileSync('/etc/os-release', 'utf8');
const fixture = {
  world,
  recorded: {
    date: new Date().toISOString().slice(0, 10),
    by: 'scripts/record-engine-world.ts',
    os: /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(osRelease)?.[1] ?? 'unknown',
    kernel: release(),
    user: `${userInfo().username} (uid ${userInfo().uid})`,
  },
  engine,
  infoCommand: [engine, ...ENGINE_INFO_ARGS[engine]],
  info: raw,
  // What airlock reads from the host when that decides the question without asking the engine.
  host: readHostCgroupState(process.env),
  observed: {
    limits: PROBE_LIMITS,
    ...outcome.observed,
    probe: outcome.lines,
    engineMessages: probe.stderr
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean),
  },
};
const out = join(values.out ?? join(ROOT, 'test/fixtures/engine-info'), `${world}.json`);
writeFileSync(out, `${JSON.stringify(fixture, null, 2)}\n`);
process.stdout.write(`wrote ${out}\n${JSON.stringify(outcome.observed)}\n`);
