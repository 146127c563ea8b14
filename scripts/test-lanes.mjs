#!/usr/bin/env node
/**
 * `npm test`'s suites, run in lanes: one lane per world the project must be proven in.
 *
 *   root          every suite as root: rootful Podman (and Docker with AIRLOCK_TEST_DOCKER=1)
 *   rootless      the container and escape suites (the Action harness among them) as a GitHub-runner-like user
 *   podman5       scripts/lanes/podman5.sh: Podman 5 / crun / pasta and Docker 26 from Debian 13
 *   vm-cgroupv2   scripts/lanes/vm-cgroupv2.sh: a Debian 13 VM under qemu with cgroup v2
 *
 *   node scripts/test-lanes.mjs [--lane NAME]...     (default: every lane; AIRLOCK_LANES=root,rootless also works)
 *
 * Every lane ends with `lane NAME: N tests, P pass, F fail[, S skipped]`; the runner then prints a table and exits
 * 1 if any lane failed. A lane that cannot run on this host prints `lane NAME: not run: REASON`: on CI (CI=true)
 * that is a failure like any other, elsewhere a loud warning — but a run in which no lane ran fails everywhere.
 *
 * Lanes run AIRLOCK_LANES_JOBS at a time (default: 2 on a 2- or 3-CPU machine, 4 on 4+), taken in the order of
 * LANES, longest first, so the short lanes fill in beside the long ones (docs/container.md, "How npm test schedules
 * the lanes", has the measurements behind this). Adding a world is adding an entry to LANES: `prepare` resolves to
 * how to run it (argv, working directory, environment, how it reports its counts) or throws LaneUnavailable.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const LIMIT_NAMES = ['pids_limit', 'memory', 'cpus'];

export class LaneUnavailable extends Error {}

/** What the host is, for lanes that depend on it. */
function hostFacts() {
  return {
    root: process.getuid?.() === 0,
    // The unified hierarchy mounted at /sys/fs/cgroup means cgroup v2; this project's machine runs hybrid v1.
    cgroupV2: existsSync('/sys/fs/cgroup/cgroup.controllers'),
  };
}

/**
 * Runs a command to completion without blocking the event loop: lanes already running keep streaming meanwhile (a
 * synchronous call here would stop reading their pipes, and a test writing to a full pipe stalls).
 */
function run(argv, options = {}) {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', (e) => resolve({ code: 127, stdout: '', stderr: e.message }));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout: stdout.trim(), stderr: stderr.trim() }));
  });
}

async function requireTools(tools) {
  for (const tool of tools) {
    if ((await run(['sh', '-c', 'command -v "$1"', 'sh', tool])).code !== 0) {
      throw new LaneUnavailable(`${tool} is not installed`);
    }
  }
}

/** The lanes after the build run what `npm run build` made; without it they would all die at once. */
function requireBuilt(cwd) {
  if (!existsSync(path.join(cwd, 'dist/cli/bin.js'))) {
    throw new LaneUnavailable(`${cwd}/dist is not built (npm run build)`);
  }
}

/** The user a GitHub runner runs jobs as, prepared by .ci/prepare-runner-user. */
const RUNNER_USER = process.env.AIRLOCK_LANE_ROOTLESS_USER ?? 'runner';

/** Checks what .ci/prepare-runner-user sets up, one fact at a time, so the reason names what is missing. */
async function runnerUserReadiness(user) {
  const id = await run(['id', '-u', user]);
  if (id.code !== 0) throw new LaneUnavailable(`there is no user '${user}' (run .ci/prepare-runner-user as root)`);
  const uid = id.stdout;
  const home = (await run(['getent', 'passwd', user])).stdout.split(':')[5] ?? '';
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    if (!new RegExp(`^(${user}|${uid}):`, 'm').test(text)) {
      throw new LaneUnavailable(`${user} has no subordinate id range in ${file} (run .ci/prepare-runner-user)`);
    }
  }
  await requireTools(['newuidmap', 'newgidmap', 'sudo', 'podman']);
  const tun = (await run(['stat', '-c', '%a', '/dev/net/tun'])).stdout;
  if (!/^66[66]$/.test(tun)) {
    throw new LaneUnavailable(`/dev/net/tun is mode ${tun || 'missing'}, users cannot open it (GitHub: 0666)`);
  }
  const runtimeDir = `/run/user/${uid}`;
  if ((await run(['stat', '-c', '%U', runtimeDir])).stdout !== user) {
    throw new LaneUnavailable(`${runtimeDir} does not exist or is not owned by ${user}`);
  }
  if ((await run(['sudo', '-n', '-u', user, 'sudo', '-n', 'true'])).code !== 0) {
    throw new LaneUnavailable(`${user} has no passwordless sudo (GitHub's runner user has it)`);
  }
  if ((await run(['sudo', '-n', '-u', user, 'test', '-x', process.execPath])).code !== 0) {
    throw new LaneUnavailable(`${user} cannot run ${process.execPath}: install Node where every user can run it`);
  }
  return { uid, home, runtimeDir };
}

/**
 * Rootless Podman keeps a pause process per user; on a machine that outlives its runs (not a GitHub runner) it can
 * die and leave state that fails every podman call with "invalid internal status … podman system migrate". That is
 * the host's state, not the project's: reset it the way Podman says, out loud, and give up if that does not help.
 */
async function ensureRootlessPodman(userCommand, print) {
  const info = await run([...userCommand, 'podman', 'info', '--format', '{{.Host.Security.Rootless}}']);
  if (info.code === 0) return;
  if (!/podman system migrate/.test(info.stderr)) {
    throw new LaneUnavailable(`rootless podman does not answer: ${info.stderr.split('\n').pop()}`);
  }
  print(`rootless podman's state is stale (${info.stderr.split('\n').pop()}); running podman system migrate`);
  await run([...userCommand, 'podman', 'system', 'migrate']);
  const again = await run([...userCommand, 'podman', 'info', '--format', '{{.Host.Security.Rootless}}']);
  if (again.code !== 0) {
    throw new LaneUnavailable(`rootless podman does not answer after a migrate: ${again.stderr.split('\n').pop()}`);
  }
}

/** A copy of this checkout (node_modules and the fresh dist/ included, .git left out) owned by `user`. */
async function stageCheckout(user, home) {
  const dest = path.join(home, 'airlock-lane');
  const copy = await run([
    'sh',
    '-c',
    'rm -rf "$2" && mkdir -p "$2" && tar -C "$1" --exclude=./.git -cf - . | tar -C "$2" -xf - && chown -R "$3:" "$2"',
    'stage',
    REPO,
    dest,
    user,
  ]);
  if (copy.code !== 0) throw new Error(`staging the checkout for ${user} in ${dest} failed: ${copy.stderr}`);
  return dest;
}

/**
 * The Debian rootfs tarball every user imports its test image from (test/helpers/images.ts): made here, as root,
 * when missing, because the cache directory is root's and the lane's user may only read it.
 */
async function ensureSharedRootfs() {
  const r = await run(
    [
      process.execPath,
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      "const m = await import('./test/helpers/images.ts'); await m.ensureTestRootfs();",
    ],
    { cwd: REPO },
  );
  if (r.code !== 0) throw new Error(`building the shared test rootfs failed: ${r.stderr}`);
}

function testFiles(cwd, dirs) {
  return dirs.flatMap((dir) =>
    readdirSync(path.join(cwd, dir))
      .filter((f) => f.endsWith('.test.ts'))
      .sort()
      .map((f) => path.join(dir, f)),
  );
}

/**
 * How to run SUITES of the checkout in `cwd` with `node`: through scripts/test.mjs (each file under its suite's
 * time limit) where the checkout has it, else node's runner on the suites' directories.
 */
function nodeSuites(cwd, suites) {
  if (existsSync(path.join(cwd, 'scripts/test.mjs'))) return ['scripts/test.mjs', ...suites];
  const dirs = suites.filter((s) => s !== 'load').map((s) => `test/${s}`);
  return ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...testFiles(cwd, dirs)];
}

/** A scripts/lanes/ lane: run as root on this checkout, it prints its own closing line. */
function laneScript(name) {
  requireBuilt(REPO);
  return { argv: ['bash', `scripts/lanes/${name}.sh`, REPO], cwd: REPO, env: process.env, counts: 'lane-line' };
}

/**
 * @typedef {{ argv: string[], cwd: string, env: NodeJS.ProcessEnv, counts: 'node-spec' | 'lane-line' }} LaneLaunch
 * @type {Array<{ name: string, summary: string, prepare: (host: ReturnType<typeof hostFacts>, print: (line: string) => void) => Promise<LaneLaunch> }>}
 */
export const LANES = [
  {
    name: 'root',
    summary: 'as root: rootful Podman (and Docker with AIRLOCK_TEST_DOCKER=1); every suite',
    async prepare(host) {
      if (!host.root) throw new LaneUnavailable('the root lane runs as root (sudo npm test, or CI)');
      requireBuilt(REPO);
      return {
        argv: [process.execPath, ...nodeSuites(REPO, ['unit', 'integration', 'load', 'container', 'escape'])],
        cwd: REPO,
        // Rootful engines apply every cgroup limit on v1 and v2 alike.
        env: { ...process.env, AIRLOCK_TEST_UNENFORCED_LIMITS: '' },
        counts: 'node-spec',
      };
    },
  },
  {
    name: 'vm-cgroupv2',
    summary: 'Debian 13 VM under qemu (TCG), cgroup v2, Podman 5 rootful and rootless: doctor, limits, smoke, escape',
    async prepare(host) {
      if (!host.root) throw new LaneUnavailable('it needs root (debootstrap, mkfs of a root file system)');
      await requireTools(['qemu-system-x86_64', 'debootstrap', 'mkfs.ext4', 'unshare', 'flock']);
      return laneScript('vm-cgroupv2');
    },
  },
  {
    name: 'rootless',
    summary: `as '${RUNNER_USER}' (a GitHub-runner-like user, sudo available): rootless Podman; container (Action harness included) and escape suites`,
    async prepare(host, print) {
      if (!host.root) throw new LaneUnavailable('preparing the rootless lane (a copy of the checkout) needs root');
      requireBuilt(REPO);
      const { home, runtimeDir } = await runnerUserReadiness(RUNNER_USER);
      const env = {
        PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        XDG_RUNTIME_DIR: runtimeDir,
        ...Object.fromEntries(
          ['AIRLOCK_TEST_CACHE', 'LANG', 'CI']
            .filter((n) => process.env[n] !== undefined)
            .map((n) => [n, process.env[n]]),
        ),
        // Rootless Podman on cgroup v1 applies no cgroup limit; on v2 it depends on delegation, so the probe decides.
        ...(host.cgroupV2 ? {} : { AIRLOCK_TEST_UNENFORCED_LIMITS: LIMIT_NAMES.join(',') }),
      };
      // A login-like environment for the user, nothing of root's: sudo resets it, `env` sets exactly these.
      const asUser = [
        'sudo',
        '-n',
        '-H',
        '-u',
        RUNNER_USER,
        'env',
        ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
      ];
      await ensureRootlessPodman(asUser, print);
      await ensureSharedRootfs();
      const cwd = await stageCheckout(RUNNER_USER, home);
      return {
        argv: [...asUser, process.execPath, ...nodeSuites(cwd, ['container', 'escape'])],
        cwd,
        env: process.env,
        counts: 'node-spec',
      };
    },
  },
  {
    name: 'podman5',
    summary:
      'Podman 5 (crun, pasta) and Docker 26 from Debian 13, rootful and rootless: doctor, sandbox, secrets, escape',
    async prepare(host) {
      if (!host.root) throw new LaneUnavailable('it needs root (debootstrap, namespaces, a rootful engine)');
      await requireTools(['debootstrap', 'unshare', 'chroot', 'flock']);
      return laneScript('podman5');
    },
  },
];

/** Sums the closing block node's spec reporter prints after each run (`ℹ tests 12`, `ℹ suites 3`, … `ℹ duration_ms`). */
export function nodeSpecCounter() {
  const keys = ['tests', 'suites', 'pass', 'fail', 'cancelled', 'skipped', 'todo', 'duration_ms'];
  const total = { tests: 0, pass: 0, fail: 0, skipped: 0 };
  let runs = 0;
  let block = null;
  return {
    line(text) {
      const m = /^ℹ (\w+) ([\d.]+)$/.exec(text);
      // Only the whole block in its order counts: a test may print a line that looks like one of them.
      if (!m || m[1] !== keys[block ? Object.keys(block).length : 0]) {
        block = m?.[1] === 'tests' ? { tests: Number(m[2]) } : null;
        return;
      }
      block = { ...(block ?? {}), [m[1]]: Number(m[2]) };
      if (m[1] !== 'duration_ms') return;
      runs += 1;
      total.tests += block.tests;
      total.pass += block.pass;
      // A cancelled test (its file timed out or died) is a failed one.
      total.fail += block.fail + block.cancelled;
      total.skipped += block.skipped + block.todo;
      block = null;
    },
    counts: () => (runs ? { ...total } : null),
  };
}

/** Reads the closing line of a scripts/lanes/ lane: `lane NAME: N tests, P pass, F fail[, S skipped]`. */
export function laneLineCounter(name) {
  const pattern = new RegExp(`^lane ${name}: (\\d+) tests, (\\d+) pass, (\\d+) fail(?:, (\\d+) skipped)?$`);
  let counts = null;
  return {
    line(text) {
      const m = pattern.exec(text);
      if (m) counts = { tests: Number(m[1]), pass: Number(m[2]), fail: Number(m[3]), skipped: Number(m[4] ?? 0) };
    },
    counts: () => counts,
  };
}

/** Children of running lanes, so an interrupted run ends them too. */
const running = new Set();

async function runLane(lane, host, prefixOutput, write) {
  const started = Date.now();
  const print = (line) => write(`${prefixOutput ? `[${lane.name}] ` : ''}${line}`);
  const minutes = () => (Date.now() - started) / 60_000;
  let launch;
  try {
    launch = await lane.prepare(host, print);
  } catch (e) {
    if (!(e instanceof LaneUnavailable)) {
      return { lane, status: 'failed', why: `preparing it failed: ${e.message}`, counts: null, minutes: minutes() };
    }
    return { lane, status: 'not run', why: e.message, counts: null, minutes: 0 };
  }
  print(`lane ${lane.name}: ${lane.summary}`);
  const counter = launch.counts === 'node-spec' ? nodeSpecCounter() : laneLineCounter(lane.name);
  return new Promise((resolve) => {
    // A process group of its own, so an interrupted run can end the lane with everything it started.
    const child = spawn(launch.argv[0], launch.argv.slice(1), {
      cwd: launch.cwd,
      env: launch.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    running.add(child);
    for (const [stream, counted] of [
      [child.stdout, true],
      [child.stderr, false],
    ]) {
      let partial = '';
      const take = (line) => {
        if (counted) counter.line(line);
        print(line);
      };
      stream.on('data', (d) => {
        const lines = (partial + d.toString()).split('\n');
        partial = lines.pop() ?? '';
        lines.forEach(take);
      });
      stream.on('end', () => partial && take(partial));
    }
    const finish = (code, signal, error) => {
      running.delete(child);
      const counts = counter.counts();
      const why =
        error ??
        (code !== 0
          ? `exited ${signal ?? code}`
          : !counts
            ? 'printed no counts'
            : counts.tests === 0
              ? 'ran no test'
              : counts.fail > 0
                ? `${counts.fail} failed`
                : '');
      resolve({ lane, status: why ? 'failed' : 'passed', why, counts, minutes: minutes() });
    };
    child.on('error', (e) => finish(null, null, `could not start ${launch.argv[0]}: ${e.message}`));
    child.on('close', (code, signal) => finish(code, signal));
  });
}

/** `lane NAME: N tests, P pass, F fail[, S skipped]`, then how it ended; or `lane NAME: not run: REASON`. */
export function summaryLine(r, onCi) {
  if (r.status === 'not run') return `lane ${r.lane.name}: not run: ${r.why}${onCi ? ' (a failure on CI)' : ''}`;
  const c = r.counts;
  const counts = c
    ? `${c.tests} tests, ${c.pass} pass, ${c.fail} fail${c.skipped ? `, ${c.skipped} skipped` : ''}`
    : 'no counts';
  return `lane ${r.lane.name}: ${counts} — ${r.status} in ${r.minutes.toFixed(1)} min${r.why ? `: ${r.why}` : ''}`;
}

function table(results) {
  const rows = [
    ['lane', 'result', 'tests', 'pass', 'fail', 'skipped', 'minutes', 'why'],
    ...results.map((r) => [
      r.lane.name,
      r.status,
      ...['tests', 'pass', 'fail', 'skipped'].map((k) => String(r.counts?.[k] ?? '-')),
      r.status === 'not run' ? '-' : r.minutes.toFixed(1),
      r.why,
    ]),
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  return rows.map((row) =>
    row
      .map((cell, i) => (i >= 2 && i <= 6 ? cell.padStart : cell.padEnd).call(cell, widths[i]))
      .join('  ')
      .trimEnd(),
  );
}

function defaultJobs() {
  const n = cpus().length;
  return n >= 4 ? 4 : n >= 2 ? 2 : 1;
}

/**
 * Runs `selected` of `lanes`, `jobs` at a time in the order of `lanes`; the others are reported as not selected.
 * Resolves to the exit code: 1 when a lane failed, when (on CI) one did not run, or when none ran at all.
 */
export async function runLanes({ lanes, selected, jobs, host, onCi, write }) {
  const started = Date.now();
  const results = lanes
    .filter((l) => !selected.includes(l))
    .map((lane) => ({
      lane,
      status: 'not run',
      why: 'not selected (--lane / AIRLOCK_LANES)',
      counts: null,
      minutes: 0,
    }));
  for (const r of results) write(summaryLine(r, onCi));
  const slots = Math.max(1, Math.min(jobs, selected.length));
  write(`lanes: ${selected.map((l) => l.name).join(', ')}; ${slots} at a time`);

  const queue = lanes.filter((l) => selected.includes(l));
  const worker = async () => {
    for (let lane = queue.shift(); lane; lane = queue.shift()) {
      const result = await runLane(lane, host, selected.length > 1, write);
      write(summaryLine(result, onCi));
      results.push(result);
    }
  };
  await Promise.all(Array.from({ length: slots }, worker));

  results.sort((a, b) => lanes.indexOf(a.lane) - lanes.indexOf(b.lane));
  write('');
  write(`== lanes: ${((Date.now() - started) / 60_000).toFixed(1)} min, ${slots} at a time ==`);
  for (const row of table(results)) write(row);
  const ran = results.filter((r) => r.status !== 'not run');
  const failed = results.filter((r) => r.status === 'failed' || (r.status === 'not run' && onCi));
  if (ran.length === 0) write('no lane ran: nothing was tested');
  else if (!onCi && ran.length < results.length) {
    write(`${results.length - ran.length} lane(s) not run here; on CI (CI=true) that fails`);
  }
  return failed.length === 0 && ran.length > 0 ? 0 : 1;
}

async function main() {
  const { values } = parseArgs({ options: { lane: { type: 'string', multiple: true } } });
  const wanted = values.lane?.length ? values.lane : (process.env.AIRLOCK_LANES?.split(',').filter(Boolean) ?? []);
  const unknown = wanted.filter((n) => !LANES.some((l) => l.name === n));
  if (unknown.length) {
    process.stderr.write(`unknown lane ${unknown.join(', ')}; lanes: ${LANES.map((l) => l.name).join(', ')}\n`);
    return 2;
  }
  return runLanes({
    lanes: LANES,
    selected: wanted.length ? LANES.filter((l) => wanted.includes(l.name)) : LANES,
    jobs: Number(process.env.AIRLOCK_LANES_JOBS) || defaultJobs(),
    host: hostFacts(),
    onCi: process.env.CI === 'true' || process.env.CI === '1',
    write: (line) => process.stdout.write(`${line}\n`),
  });
}

// Run as a script (npm test); imported by its unit test, it only exports.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      for (const child of running) {
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {
          // already gone
        }
      }
      process.exit(130);
    });
  }
  process.exitCode = await main();
}
