/**
 * Infrastructure faults on real Podman (and Docker when AIRLOCK_TEST_DOCKER=1), all of which must fail closed:
 * the proxy container dying mid-run cuts the sandbox off and ends the run with 125; airlock itself killed with
 * SIGKILL leaves resources that the next run removes (the sandbox container, the proxy container and both networks);
 * an engine that is missing or failing is a 125 with a message that says so. Upstream resets, timeouts and bad
 * certificates are covered in test/integration/proxy-upstream-failures.test.ts.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { makeTestPki } from '../helpers/tls-fixtures.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// The built CLI, as users run it (npm test builds first).
const entry = path.join(root, 'dist/cli/bin.js');
const engines = ['podman', ...(process.env.AIRLOCK_TEST_DOCKER === '1' ? ['docker'] : [])];

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function start(
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv = process.env,
): ChildProcess & { result: Promise<Run> } {
  const child = spawn(process.execPath, [entry, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const result = new Promise<Run>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return Object.assign(child, { result });
}

function engineCall(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(args[0]!, args.slice(1), (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** Containers and networks that carry this run's id label, in any state. */
async function resourcesOfRun(engine: string, runId: string): Promise<string[]> {
  const label = `label=io.airlock.run=${runId}`;
  const containers = await engineCall([engine, 'ps', '--all', '--filter', label, '--format', '{{.Names}}']);
  const networks = await engineCall([engine, 'network', 'ls', '--filter', label, '--format', '{{.Name}}']);
  return [...containers.stdout.split('\n'), ...networks.stdout.split('\n')].map((l) => l.trim()).filter(Boolean);
}

/** The run id of the airlock process `pid`, from the owner label on its proxy container. */
async function runIdOwnedBy(engine: string, pid: number): Promise<string | null> {
  const listed = await engineCall([
    engine,
    'ps',
    '--filter',
    `label=io.airlock.owner-pid=${pid}`,
    '--format',
    '{{.Names}}',
  ]);
  const proxy = listed.stdout.split('\n').find((n) => n.startsWith('airlock-proxy-'));
  return proxy ? proxy.slice('airlock-proxy-'.length) : null;
}

async function waitFor<T>(what: string, probe: () => T | null | Promise<T | null>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== null && value !== false) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

let upstream: { port: number; hits: number; close(): Promise<void> };
let upstreamCaPem: string;

before(async () => {
  const pki = await makeTestPki(['allowed.test']);
  const state = { hits: 0 };
  const server = https.createServer({ cert: pki.certPem, key: pki.keyPem }, (req, res) => {
    state.hits++;
    req.resume();
    res.end('phase-one-ok\n');
  });
  await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
  upstream = {
    port: (server.address() as AddressInfo).port,
    get hits() {
      return state.hits;
    },
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
  upstreamCaPem = pki.caPem;
});

after(() => upstream?.close());

/** A workspace whose sandbox may reach allowed.test (the upstream above) and nothing else. */
async function sandboxWorkspace(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'airlock-faults-'));
  await mkdir(path.join(dir, '.airlock'));
  await writeFile(path.join(dir, '.airlock/upstream-ca.pem'), upstreamCaPem);
  await writeFile(
    path.join(dir, '.airlock/sandbox.yaml'),
    `upstream_ca_file: upstream-ca.pem\nupstream_hosts:\n  allowed.test: host-gateway:${upstream.port}\n`,
  );
  await writeFile(path.join(dir, '.airlock/network-allowlist.yaml'), 'domains:\n  - allowed.test\n');
  return dir;
}

for (const engine of engines) {
  describe(`infrastructure faults on ${engine}`, () => {
    it('the proxy container killed mid-run: the sandbox loses the network, airlock exits 125 at once, nothing is left', async (t) => {
      const cwd = await sandboxWorkspace();
      // Phase 1 proves the network worked; phase 2 probes it again once the test has killed the proxy. The sleep is
      // what airlock must not wait for.
      const script = [
        'curl -sS --max-time 10 https://allowed.test/ok',
        'touch /workspace/phase1',
        'while [ ! -e /workspace/proxy-killed ]; do sleep 0.1; done',
        'if curl -sS --max-time 3 https://allowed.test/ok; then echo after-kill=reached; else echo after-kill=cut-off; fi',
        'sleep 30',
        'echo slept-through',
      ].join('; ');
      const run = start(['run', '--engine', engine, '--', 'bash', '-c', script], cwd);
      await waitFor('phase 1', () => existsSync(path.join(cwd, 'phase1')));
      const runId = await waitFor('the run id', () => runIdOwnedBy(engine, run.pid!));
      const hitsBefore = upstream.hits;
      const killed = await engineCall([engine, 'kill', `airlock-proxy-${runId}`]);
      assert.equal(killed.code, 0, killed.stderr);
      const killedAt = Date.now();
      await writeFile(path.join(cwd, 'proxy-killed'), '');
      const r = await run.result;
      const took = Date.now() - killedAt;
      t.diagnostic(`airlock exited ${r.code} ${took} ms after the proxy was killed`);

      assert.match(r.stdout, /phase-one-ok/);
      assert.equal(r.code, 125, r.stderr);
      assert.ok(took < 15_000, `airlock took ${took} ms to notice the proxy died`);
      assert.doesNotMatch(r.stdout, /slept-through/);
      assert.doesNotMatch(r.stdout, /after-kill=reached/);
      assert.equal(upstream.hits, hitsBefore, 'a request reached the upstream after the proxy was killed');
      assert.match(r.stderr, /sandbox infrastructure failed: the proxy exited/);
      assert.deepEqual(await resourcesOfRun(engine, runId), []);
    });

    it('airlock killed with SIGKILL: the next run removes its sandbox container, proxy container and both networks', async (t) => {
      const cwd = await sandboxWorkspace();
      const run = start(['run', '--engine', engine, '--', 'bash', '-c', 'echo ready; sleep 300'], cwd);
      let out = '';
      run.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await waitFor('the command to start', () => out.includes('ready'));
      const runId = await waitFor('the run id', () => runIdOwnedBy(engine, run.pid!));
      const before = await resourcesOfRun(engine, runId);
      assert.ok(
        before.some((n) => n.startsWith('airlock-run-')),
        `no sandbox container among ${before.join(', ')}`,
      );
      assert.ok(
        before.some((n) => n.startsWith('airlock-proxy-')),
        `no proxy container among ${before.join(', ')}`,
      );
      assert.equal(before.filter((n) => !n.startsWith('airlock-run-') && !n.startsWith('airlock-proxy-')).length, 2);
      run.kill('SIGKILL');
      await run.result;
      // Informational: any airlock run on this machine may sweep them first; what matters is that they end up gone.
      t.diagnostic(`left right after the kill: ${(await resourcesOfRun(engine, runId)).join(', ') || 'nothing'}`);

      const nextStarted = Date.now();
      const next = await start(['run', '--engine', engine, '--verbose', '--', 'true'], cwd).result;
      t.diagnostic(`the next run took ${Date.now() - nextStarted} ms`);
      assert.equal(next.code, 0, next.stderr);
      // The sweep is asynchronous to a concurrent airlock process's; ours has finished when `next` has exited.
      assert.deepEqual(await resourcesOfRun(engine, runId), [], `left behind by the killed run ${runId}`);
    });
  });
}

describe('a missing or failing engine', () => {
  let fakeBin: string;

  before(async () => {
    fakeBin = await mkdtemp(path.join(tmpdir(), 'airlock-fake-engine-'));
    // Fails every call the way a broken engine does: a message on stderr, exit 1.
    for (const name of ['podman', 'docker']) {
      await writeFile(
        path.join(fakeBin, name),
        `#!/bin/sh\necho "Error: fake-${name}: database is locked (storage corrupted)" >&2\nexit 1\n`,
      );
      await chmod(path.join(fakeBin, name), 0o755);
    }
  });

  it('no podman and no docker on PATH: 125 and "no container engine", nothing run', async () => {
    const cwd = await sandboxWorkspace();
    const r = await start(['run', '--', 'bash', '-c', 'echo ran'], cwd, { ...process.env, PATH: '/nonexistent' })
      .result;
    assert.equal(r.code, 125, r.stderr);
    assert.match(r.stderr, /no container engine/);
    assert.equal(r.stdout, '');
  });

  for (const engine of ['podman', 'docker']) {
    it(`${engine} failing every call: 125 with the engine’s own message, nothing run`, async () => {
      const cwd = await sandboxWorkspace();
      const env = { ...process.env, PATH: `${fakeBin}:${process.env.PATH ?? '/usr/bin:/bin'}` };
      const r = await start(['run', '--engine', engine, '--', 'bash', '-c', 'echo ran'], cwd, env).result;
      assert.equal(r.code, 125, r.stderr);
      assert.match(r.stderr, new RegExp(`fake-${engine}: database is locked`));
      assert.doesNotMatch(r.stderr, /^\s+at /m, 'a stack trace instead of a message');
      assert.equal(r.stdout, '');
    });
  }
});
