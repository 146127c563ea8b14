#!/usr/bin/env node
/**
 * `npm test`'s suites, run in lanes: one lane per world the project must be proven in (who runs airlock, which
 * engine mode). Each lane prints its own counts (tests / pass / fail / skipped) and how long it took; a lane whose
 * preparation is missing prints why and fails — unless AIRLOCK_LANE_<NAME>_SKIP gives a reason outside the project
 * (e.g. "the CI host has no user namespaces"), which is printed instead.
 *
 *   node scripts/test-lanes.mjs [--lane NAME]...      (default: every lane; AIRLOCK_LANES=root,rootless also works)
 *
 * Lanes run one after the other on a small machine (their container tests are timing-sensitive and would compete
 * for the CPU); with AIRLOCK_LANES_PARALLEL=1, or 4+ CPUs, side by side. Adding a world is adding an entry to
 * LANES: `prepare` returns how to launch Node in that world (a command prefix, a working directory and the
 * environment) or throws LaneUnavailable with the reason.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
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

function sh(argv, options = {}) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', ...options });
  return { code: r.status ?? 1, stdout: (r.stdout ?? '').trim(), stderr: (r.stderr ?? '').trim() };
}

/** The user a GitHub runner runs jobs as, prepared by .ci/prepare-runner-user. */
const RUNNER_USER = process.env.AIRLOCK_LANE_ROOTLESS_USER ?? 'runner';

/** Checks what .ci/prepare-runner-user sets up, one fact at a time, so the reason names what is missing. */
function runnerUserReadiness(user) {
  const id = sh(['id', '-u', user]);
  if (id.code !== 0) throw new LaneUnavailable(`there is no user '${user}' (run .ci/prepare-runner-user as root)`);
  const uid = id.stdout;
  const home = sh(['getent', 'passwd', user]).stdout.split(':')[5] ?? '';
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
    if (!new RegExp(`^(${user}|${uid}):`, 'm').test(text)) {
      throw new LaneUnavailable(`${user} has no subordinate id range in ${file} (run .ci/prepare-runner-user)`);
    }
  }
  for (const tool of ['newuidmap', 'newgidmap', 'sudo', 'podman']) {
    if (sh(['sh', '-c', `command -v ${tool}`]).code !== 0) throw new LaneUnavailable(`${tool} is not installed`);
  }
  const tun = sh(['stat', '-c', '%a', '/dev/net/tun']).stdout;
  if (!/^66[66]$/.test(tun)) {
    throw new LaneUnavailable(`/dev/net/tun is mode ${tun || 'missing'}, users cannot open it (GitHub: 0666)`);
  }
  const runtimeDir = `/run/user/${uid}`;
  if (sh(['stat', '-c', '%U', runtimeDir]).stdout !== user) {
    throw new LaneUnavailable(`${runtimeDir} does not exist or is not owned by ${user}`);
  }
  if (sh(['sudo', '-n', '-u', user, 'sudo', '-n', 'true']).code !== 0) {
    throw new LaneUnavailable(`${user} has no passwordless sudo (GitHub's runner user has it)`);
  }
  if (sh(['sudo', '-n', '-u', user, 'test', '-x', process.execPath]).code !== 0) {
    throw new LaneUnavailable(`${user} cannot run ${process.execPath}: install Node where every user can run it`);
  }
  return { uid, home, runtimeDir };
}

/** A copy of this checkout (node_modules and the fresh dist/ included, .git left out) owned by `user`. */
function stageCheckout(user, home) {
  const dest = path.join(home, 'airlock-lane');
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true });
  const copy = sh(['sh', '-c', 'tar -C "$1" --exclude=./.git -cf - . | tar -C "$2" -xf -', 'copy', REPO, dest]);
  if (copy.code !== 0) throw new Error(`staging the checkout for ${user} failed: ${copy.stderr}`);
  const own = sh(['chown', '-R', `${user}:`, dest]);
  if (own.code !== 0) throw new Error(`chown of ${dest} failed: ${own.stderr}`);
  return dest;
}

/**
 * The Debian rootfs tarball every user imports its test image from (test/helpers/images.ts): made here, as root,
 * when missing, because the cache directory is root's and the lane's user may only read it.
 */
function ensureSharedRootfs() {
  const r = sh(
    [
      process.execPath,
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      "const m = await import('./test/helpers/images.ts'); await m.ensureTestRootfs();",
    ],
    { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  if (r.code !== 0) throw new Error(`building the shared test rootfs failed: ${r.stderr}`);
}

/** Variables a lane passes on from CI, when set. */
function passThrough(names) {
  return Object.fromEntries(names.filter((n) => process.env[n] !== undefined).map((n) => [n, process.env[n]]));
}

/** @type {Array<{ name: string, summary: string, files: string[], prepare: (host: ReturnType<typeof hostFacts>) => { launcher: string[], cwd: string, env: Record<string, string>, tapDir: string } }>} */
export const LANES = [
  {
    name: 'root',
    summary: 'as root: rootful Podman (and Docker with AIRLOCK_TEST_DOCKER=1); every suite',
    files: ['test/unit', 'test/integration', 'test/container', 'test/escape'],
    prepare(host) {
      if (!host.root) throw new LaneUnavailable('the root lane runs as root (sudo npm test, or CI)');
      return {
        launcher: [],
        cwd: REPO,
        // Rootful engines apply every cgroup limit on v1 and v2 alike.
        env: { ...process.env, AIRLOCK_TEST_UNENFORCED_LIMITS: '' },
        tapDir: REPO,
      };
    },
  },
  {
    name: 'rootless',
    summary: `as '${RUNNER_USER}' (a GitHub-runner-like user, sudo available): rootless Podman; container, escape and Action suites`,
    files: ['test/container', 'test/escape'],
    prepare(host) {
      if (!host.root) throw new LaneUnavailable('preparing the rootless lane (a copy of the checkout) needs root');
      const { home, runtimeDir } = runnerUserReadiness(RUNNER_USER);
      ensureSharedRootfs();
      const cwd = stageCheckout(RUNNER_USER, home);
      const env = {
        PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        XDG_RUNTIME_DIR: runtimeDir,
        ...passThrough(['AIRLOCK_TEST_CACHE', 'LANG', 'CI']),
        // Rootless Podman on cgroup v1 applies no cgroup limit; on v2 it depends on delegation, so the probe decides.
        ...(host.cgroupV2 ? {} : { AIRLOCK_TEST_UNENFORCED_LIMITS: LIMIT_NAMES.join(',') }),
      };
      const assignments = Object.entries(env).map(([k, v]) => `${k}=${v}`);
      return {
        // A login-like environment for the user, nothing of root's: sudo resets it, `env` sets exactly these.
        launcher: ['sudo', '-n', '-H', '-u', RUNNER_USER, 'env', ...assignments],
        cwd,
        env: process.env,
        tapDir: cwd,
      };
    },
  },
];

function testFiles(cwd, dirs) {
  return dirs.flatMap((dir) =>
    readdirSync(path.join(cwd, dir))
      .filter((f) => f.endsWith('.test.ts'))
      .sort()
      .map((f) => path.join(dir, f)),
  );
}

/** The totals node's TAP reporter prints last (`# tests 12`, `# pass 11`, …). */
function tapCounts(file) {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const count = (key) => {
    const all = [...text.matchAll(new RegExp(`^# ${key} (\\d+)$`, 'gm'))];
    return all.length ? Number(all[all.length - 1][1]) : null;
  };
  return { tests: count('tests'), pass: count('pass'), fail: count('fail'), skipped: count('skipped') };
}

function runLane(lane, host, prefixOutput) {
  const started = Date.now();
  const label = `[${lane.name}] `;
  const print = (line) => process.stdout.write(`${prefixOutput ? label : ''}${line}\n`);
  let launch;
  try {
    launch = lane.prepare(host);
  } catch (e) {
    if (!(e instanceof LaneUnavailable)) throw e;
    const skipVar = `AIRLOCK_LANE_${lane.name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_SKIP`;
    const reason = process.env[skipVar];
    return Promise.resolve({
      lane,
      status: reason ? 'skipped' : 'unprepared',
      why: reason
        ? `${e.message}; ${skipVar}=${reason}`
        : `${e.message} (set ${skipVar}=<reason> if it is outside the project)`,
      seconds: 0,
    });
  }
  const tap = path.join(launch.tapDir, `.lane-${lane.name}.tap`);
  rmSync(tap, { force: true });
  const files = testFiles(launch.cwd, lane.files);
  const argv = [
    ...launch.launcher,
    process.execPath,
    '--import',
    'tsx',
    '--test',
    '--test-concurrency=1',
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${tap}`,
    ...files,
  ];
  print(`lane ${lane.name}: ${lane.summary} — ${files.length} files`);
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), {
      cwd: launch.cwd,
      env: launch.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    for (const stream of [child.stdout, child.stderr]) {
      let partial = '';
      stream.on('data', (d) => {
        const lines = (partial + d.toString()).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) print(line);
      });
      stream.on('end', () => partial && print(partial));
    }
    child.on('close', (code, signal) => {
      const counts = tapCounts(tap);
      rmSync(tap, { force: true });
      const ok = code === 0 && counts.fail === 0 && counts.tests !== null;
      resolve({
        lane,
        status: ok ? 'passed' : 'failed',
        why: ok ? '' : `node --test exited ${signal ?? code}`,
        counts,
        seconds: (Date.now() - started) / 1000,
      });
    });
  });
}

/** The closing line every lane prints (scripts/lanes/ print the same): `lane NAME: N tests, P pass, F fail[, S skipped]`. */
function summaryLine(result) {
  const c = result.counts;
  const counts = c
    ? `${c.tests ?? '?'} tests, ${c.pass ?? '?'} pass, ${c.fail ?? '?'} fail${c.skipped ? `, ${c.skipped} skipped` : ''}`
    : '0 tests';
  const time = result.seconds ? ` in ${(result.seconds / 60).toFixed(1)} min` : '';
  const why = result.why ? `: ${result.why}` : '';
  return `lane ${result.lane.name}: ${counts} — ${result.status}${time}${why}`;
}

async function main() {
  const { values } = parseArgs({ options: { lane: { type: 'string', multiple: true } } });
  const wanted = values.lane?.length ? values.lane : (process.env.AIRLOCK_LANES?.split(',').filter(Boolean) ?? []);
  const unknown = wanted.filter((n) => !LANES.some((l) => l.name === n));
  if (unknown.length) {
    process.stderr.write(`unknown lane ${unknown.join(', ')}; lanes: ${LANES.map((l) => l.name).join(', ')}\n`);
    return 2;
  }
  const lanes = wanted.length ? LANES.filter((l) => wanted.includes(l.name)) : LANES;
  const host = hostFacts();
  const parallel =
    process.env.AIRLOCK_LANES_PARALLEL === '1' || (process.env.AIRLOCK_LANES_PARALLEL !== '0' && cpus().length >= 4);
  const results = [];
  if (parallel) {
    results.push(...(await Promise.all(lanes.map((l) => runLane(l, host, true)))));
  } else {
    for (const lane of lanes) {
      const result = await runLane(lane, host, lanes.length > 1);
      process.stdout.write(`${summaryLine(result)}\n`);
      results.push(result);
    }
  }
  process.stdout.write(`\n== lanes (${parallel ? 'side by side' : 'one after the other'}) ==\n`);
  for (const r of results) process.stdout.write(`${summaryLine(r)}\n`);
  return results.every((r) => r.status === 'passed' || r.status === 'skipped') ? 0 : 1;
}

process.exitCode = await main();
