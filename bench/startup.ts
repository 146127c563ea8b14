/**
 * Start-up overhead of `airlock run -- true` against a bare `podman run --rm <same image> true`, all with warm
 * images, interleaved in the same session so machine noise hits each alike: the bare baseline, airlock with
 * `network_sandbox: false` (the container half only) and airlock with the network sandbox (proxy container,
 * per-run networks and CA — the product as shipped). Rootful (as the user running the bench) and, side by side,
 * rootless: the same three commands as a runner-like user (`--rootless-user`, default `runner` when the bench runs
 * as root and that user exists; see .ci/prepare-runner-user). Then one traced run of each mode shows where the time
 * goes: every engine call airlock makes, when it started and how long it took (a wrapper put first on PATH records
 * them). Prints the tables and writes them into the "Startup" section of docs/benchmarks.md.
 *
 *   npm run bench:startup [-- --runs N --engine podman|docker --rootless-user NAME|'']
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readHostLimits } from '../src/cli/engine/host-limits.js';
import { ensureTestImage, ensureTestRootfs, TEST_IMAGE } from '../test/helpers/images.js';

const ROOT = resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    engine: { type: 'string', default: 'podman' },
    'rootless-user': { type: 'string' },
  },
});
const RUNS = Number(values.runs);
const ENGINE = values.engine === 'docker' ? 'docker' : 'podman';

/** Who runs a command: this process's user, or a rootless user (uid/gid/env) when the bench runs as root. */
interface Runner {
  label: string;
  uid?: number;
  gid?: number;
  env: NodeJS.ProcessEnv;
}

function rootlessRunner(): Runner | null {
  if (ENGINE !== 'podman' || process.getuid?.() !== 0) return null;
  const name = values['rootless-user'] ?? 'runner';
  if (name === '') return null;
  const id = (flag: string) => spawnSync('id', [flag, name], { encoding: 'utf8' });
  const uid = id('-u');
  if (uid.status !== 0) {
    if (values['rootless-user'] !== undefined) throw new Error(`no user ${name} (run .ci/prepare-runner-user)`);
    return null;
  }
  const home = spawnSync('getent', ['passwd', name], { encoding: 'utf8' }).stdout.split(':')[5] ?? `/home/${name}`;
  const u = Number(uid.stdout.trim());
  return {
    label: `rootless (${name})`,
    uid: u,
    gid: Number(id('-g').stdout.trim()),
    env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: home, USER: name, XDG_RUNTIME_DIR: `/run/user/${u}` },
  };
}

const here: Runner = { label: process.getuid?.() === 0 ? 'rootful' : 'as this user', env: process.env };
const rootless = rootlessRunner();
const runners = rootless ? [here, rootless] : [here];

function timed(argv: string[], cwd: string, who: Runner, env: NodeJS.ProcessEnv = who.env): Promise<number> {
  return new Promise((done, fail) => {
    const started = process.hrtime.bigint();
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd,
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
      ...(who.uid === undefined ? {} : { uid: who.uid, gid: who.gid }),
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => {
      if (code !== 0) fail(new Error(`${argv.join(' ')} (${who.label}) exited ${code}: ${err}`));
      else done(Number(process.hrtime.bigint() - started) / 1e6);
    });
  });
}

/** The shipped CLI, as users run it (built by `npm run build`). */
function airlockEntry(): { argv: string[]; label: string } {
  const built = join(ROOT, 'dist/cli/bin.js');
  if (!existsSync(built)) throw new Error('dist/cli/bin.js is missing: run `npm run build` first');
  return { argv: [process.execPath, built], label: 'dist/cli/bin.js' };
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const median = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return { median, mean: xs.reduce((a, b) => a + b, 0) / xs.length, min: s[0]!, max: s[s.length - 1]! };
};

/** Hands a directory tree to the rootless user (workspaces live in the bench's temp dirs). */
function giveTo(who: Runner, dir: string): void {
  if (who.uid === undefined) return;
  chownSync(dir, who.uid, who.gid!);
  for (const entry of readdirSync(dir)) {
    const p = join(dir, entry);
    if (statSync(p).isDirectory()) giveTo(who, p);
    else chownSync(p, who.uid, who.gid!);
  }
}

async function workspaceFor(who: Runner, yaml: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-bench-ws-'));
  await mkdir(join(dir, '.airlock'));
  await writeFile(join(dir, '.airlock/sandbox.yaml'), yaml);
  giveTo(who, dir);
  return dir;
}

/** The test image in this runner's own image storage (rootless storage is per user). */
async function ensureImageFor(who: Runner): Promise<void> {
  if (who.uid === undefined) {
    await ensureTestImage(ENGINE);
    return;
  }
  const tarball = await ensureTestRootfs();
  const probe = (argv: string[]) =>
    timed(argv, tmpdir(), who).then(
      () => true,
      () => false,
    );
  if (await probe([ENGINE, 'image', 'inspect', TEST_IMAGE])) return;
  await timed([ENGINE, 'import', '--change', 'CMD ["/bin/bash"]', tarball, TEST_IMAGE], tmpdir(), who);
}

const entry = airlockEntry();
const airlockArgv = [...entry.argv, 'run', '--engine', ENGINE, '--', 'true'];
// The engine's default ulimits exceed this kind of host's hard limits (see src/cli/engine/host-limits.ts), so the
// bare baseline gets the same two --ulimit flags airlock passes; it is otherwise a plain `run --rm`.
const limits = readHostLimits();
const ulimits = [`--ulimit=nofile=${limits.nofile}:${limits.nofile}`, `--ulimit=nproc=${limits.nproc}:${limits.nproc}`];
const bareArgv = [ENGINE, 'run', '--rm', ...ulimits, TEST_IMAGE, 'true'];

interface Mode {
  who: Runner;
  plain: string;
  sandboxed: string;
  bare: number[];
  airlock: number[];
  network: number[];
}

const modes: Mode[] = [];
for (const who of runners) {
  await ensureImageFor(who);
  modes.push({
    who,
    plain: await workspaceFor(who, `network_sandbox: false\nimage: ${TEST_IMAGE}\n`),
    sandboxed: await workspaceFor(who, `image: ${TEST_IMAGE}\n`),
    bare: [],
    airlock: [],
    network: [],
  });
}
// Warm-up: images, the proxy image (built per user on first use), caches.
for (const m of modes) {
  await timed(bareArgv, m.plain, m.who);
  await timed(airlockArgv, m.plain, m.who);
  await timed(airlockArgv, m.sandboxed, m.who);
}
for (let i = 0; i < RUNS; i++) {
  for (const m of modes) {
    m.bare.push(await timed(bareArgv, m.plain, m.who));
    m.airlock.push(await timed(airlockArgv, m.plain, m.who));
    m.network.push(await timed(airlockArgv, m.sandboxed, m.who));
  }
}

/**
 * One run with every engine call recorded: a wrapper named like the engine, first on PATH, logs start and end
 * (ns since the epoch) and the subcommand, then runs the real binary. airlock finds the engine on PATH.
 */
async function trace(m: Mode): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-bench-trace-'));
  const log = join(dir, 'calls.log');
  const real = spawnSync('sh', ['-c', `command -v ${ENGINE}`], { encoding: 'utf8', env: m.who.env }).stdout.trim();
  writeFileSync(
    join(dir, ENGINE),
    `#!/bin/sh\ns=$(date +%s%N)\n"${real}" "$@"\nrc=$?\necho "$s $(date +%s%N) $1 $2 $3" >> "${log}"\nexit $rc\n`,
  );
  chmodSync(join(dir, ENGINE), 0o755);
  writeFileSync(log, '');
  giveTo(m.who, dir);
  const started = BigInt(Date.now()) * 1_000_000n;
  const total = await timed(airlockArgv, m.sandboxed, m.who, { ...m.who.env, PATH: `${dir}:${m.who.env.PATH}` });
  const rows = readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [s, e, ...what] = line.split(' ');
      return { start: Number(BigInt(s!) - started) / 1e6, ms: Number(BigInt(e!) - BigInt(s!)) / 1e6, what };
    })
    .sort((a, b) => a.start - b.start);
  const describe = (what: string[]) => {
    const [a = '', b = '', c = ''] = what;
    if (a === 'run')
      return what.includes('--rm') ? 'run (the proxy container, for the whole run)' : 'run (the command)';
    if (a === 'network' || a === 'container' || a === 'image')
      return `${a} ${b}${b === 'create' || b === 'inspect' ? '' : ` ${c}`}`.trim();
    return `${a} ${b}`.trim();
  };
  return [
    `| ${m.who.label}: engine call | starts at ms | takes ms |`,
    '| --- | ---: | ---: |',
    ...rows.map((r) => `| \`${describe(r.what)}\` | ${r.start.toFixed(0)} | ${r.ms.toFixed(0)} |`),
    `| whole \`airlock run -- true\` (traced) | 0 | ${total.toFixed(0)} |`,
  ].join('\n');
}
const traces: string[] = [];
for (const m of modes) traces.push(await trace(m));

const ms = (x: number) => x.toFixed(0);
const header = `| command (${RUNS} runs each, interleaved) | ${modes.map((m) => `${m.who.label} median ms | min–max`).join(' | ')} |`;
const align = `| --- | ${modes.map(() => '---: | ---:').join(' | ')} |`;
const row = (label: string, pick: (m: Mode) => number[]) =>
  `| ${label} | ${modes
    .map((m) => {
      const s = stats(pick(m));
      return `${ms(s.median)} | ${ms(s.min)}–${ms(s.max)}`;
    })
    .join(' | ')} |`;
const ratios = modes.map((m) => {
  const b = stats(m.bare).median;
  const a = stats(m.airlock).median;
  const n = stats(m.network).median;
  return (
    `${m.who.label}: container half only **${(a / b).toFixed(2)}×** (overhead ${ms(a - b)} ms); with the network ` +
    `sandbox **${(n / b).toFixed(2)}×** (added ${ms(n - b)} ms).`
  );
});
const table = [
  header,
  align,
  row(`\`${ENGINE} run --rm --ulimit … <image> true\``, (m) => m.bare),
  row('`airlock run -- true`, `network_sandbox: false`', (m) => m.airlock),
  row('`airlock run -- true`, network sandbox (default)', (m) => m.network),
  '',
  'Ratio of medians, airlock / bare:',
  '',
  ...ratios.map((r) => `- ${r}`),
].join('\n');
process.stdout.write(`${table}\n\n${traces.join('\n\n')}\n`);

const section = `## Startup

\`npm run bench:startup\` — ${new Date().toISOString().slice(0, 10)}, ${ENGINE}, ${cpus().length} CPUs, Node ${process.version},
image \`${TEST_IMAGE}\` (warm), airlock entry: ${entry.label}. Load average at the start: ${loadavg()[0]!.toFixed(2)}.
${rootless ? `Rootless: the same commands as \`${rootless.env.USER}\` (uid ${rootless.uid}, rootless Podman, per-user image storage).\n` : ''}
${table}

With the network sandbox, airlock also creates two networks, starts the proxy container (Node start-up in the
container, listeners bound, ready line) and removes it all afterwards; network creation, the per-run CA and the
image check run side by side.

airlock's extra work per run: Node start-up and config loading, the limits check (from the host's cgroup files for
local rootful Podman and rootless Podman on cgroup v1; \`info\` otherwise, concurrently with the rest), the orphan
sweep (\`ps\` + \`network ls\` with a label filter, concurrent too),
\`image inspect\`, the hardened \`run\` itself, then \`rm\` because the container is not started with \`--rm\` (and
\`container inspect\` only after the ambiguous codes 125-127 and 137).

### Where the time goes (one traced run with the network sandbox per mode)

Every engine call of one \`airlock run -- true\`, by start time (ms after airlock was spawned) and duration; calls
that overlap ran side by side. The proxy's \`run\` lasts until the command's container is gone; the command's
\`run\` starts once the proxy reported ready. Read them as: the time before the first call is Node start-up and
config loading; from the proxy's \`run\` to the command's \`run\` is the proxy start (container, user-mode network
set-up when rootless, Node in the container, ready line); after the command's \`run\` come the teardown calls
(\`rm\` of the command's container, the proxy stopping, \`network rm\`), which the measured time includes. On a
busy machine (see the load average above) every figure grows, Node start-up most.

${traces.join('\n\n')}
`;
const docPath = join(ROOT, 'docs/benchmarks.md');
const doc = existsSync(docPath) ? readFileSync(docPath, 'utf8') : '# Benchmarks\n';
const start = doc.search(/^## Startup\s*$/m);
let updated: string;
if (start < 0) {
  updated = `${doc.trimEnd()}\n\n${section}`;
} else {
  const rest = doc.slice(start + 1);
  const next = rest.search(/^## /m);
  updated = doc.slice(0, start) + section + (next < 0 ? '' : `\n${rest.slice(next)}`);
}
writeFileSync(docPath, updated.endsWith('\n') ? updated : `${updated}\n`);
process.stdout.write(`wrote the Startup section of ${docPath}\n`);
