import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import {
  airlock,
  airlockContainers,
  collect,
  ENGINE_SUITES,
  exec,
  prepareEngine,
  runOn,
  sandboxYaml,
  startAirlock,
  TEST_IMAGE,
  waitFor,
  workspace,
} from './harness.js';

/** The command traps SIGTERM, records it in the workspace and exits; "ready" tells the test it is running. */
const TRAPPING = 'trap "echo got-term > /workspace/term; exit 0" TERM; echo ready; while :; do sleep 0.1; done';

for (const { engine, skip } of ENGINE_SUITES) {
  describe(`signals and orphan cleanup on ${engine}`, { skip }, () => {
    before(() => prepareEngine(engine));

    for (const [signal, code] of [
      ['SIGTERM', 143],
      ['SIGINT', 130],
    ] as const) {
      it(`${signal} stops the container (the command sees SIGTERM), removes it, and exits ${code}`, async () => {
        const cwd = await workspace(sandboxYaml());
        const child = startAirlock([...runOn(engine), '--', 'sh', '-c', TRAPPING], { cwd });
        const result = collect(child);
        let out = '';
        child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        await waitFor('the command to start', () => out.includes('ready'));
        child.kill(signal);
        const r = await result;
        assert.equal(r.code, code, r.stderr);
        assert.equal(readFileSync(join(cwd, 'term'), 'utf8'), 'got-term\n');
        assert.deepEqual(await airlockContainers(engine), []);
      });
    }

    it('SIGTERM to the whole process group (a cancelled CI job) exits 143 without blaming the proxy', async () => {
      // The network sandbox is on: the proxy's engine client is a child of airlock too.
      const cwd = await workspace(`image: ${TEST_IMAGE}\n`);
      const child = startAirlock([...runOn(engine), '--', 'sh', '-c', TRAPPING], { cwd, detached: true });
      const result = collect(child);
      let out = '';
      let err = '';
      let exited = false;
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      child.once('exit', () => (exited = true));
      // Longer than airlock's own 60 s proxy-ready watchdog, so a slow proxy ends in airlock's verdict, not ours;
      // an airlock that exits before the command starts fails at once with what it said.
      await waitFor('the command to start', () => out.includes('ready') || exited, 150_000).catch((e: Error) => {
        throw new Error(`${e.message}; airlock said: ${err.slice(-2000)}`);
      });
      assert.ok(!exited, `airlock exited before the command started: ${err.slice(-2000)}`);
      process.kill(-child.pid!, 'SIGTERM');
      const r = await result;
      assert.equal(r.code, 143, r.stderr);
      assert.doesNotMatch(r.stderr, /sandbox failure|proxy exited|infrastructure failed/);
      assert.equal(readFileSync(join(cwd, 'term'), 'utf8'), 'got-term\n');
      assert.deepEqual(await airlockContainers(engine), []);
    });

    it('kills a command that ignores SIGTERM after the 5 s grace', async () => {
      const cwd = await workspace(sandboxYaml());
      const stubborn = 'trap "" TERM; echo ready; while :; do sleep 0.1; done';
      const child = startAirlock([...runOn(engine), '--', 'sh', '-c', stubborn], { cwd });
      const result = collect(child);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await waitFor('the command to start', () => out.includes('ready'));
      const stoppedAt = Date.now();
      child.kill('SIGTERM');
      const r = await result;
      assert.equal(r.code, 143, r.stderr);
      const took = Date.now() - stoppedAt;
      assert.ok(took >= 4500 && took < 20000, `stop took ${took} ms`);
      assert.deepEqual(await airlockContainers(engine), []);
    });

    it('SIGTERM during an image build aborts the build, runs nothing, leaves no build container, exits 143', async () => {
      // A base image of its own, so a build container Podman 4.3 leaves behind when a build is aborted would have a
      // name only this test uses.
      const base = `localhost/airlock-abort-base-${process.pid}:latest`;
      assert.equal((await exec([engine, 'tag', TEST_IMAGE, base])).code, 0);
      const cwd = await workspace('network_sandbox: false\n', {
        '.airlock/container/Dockerfile': `FROM ${base}\nRUN echo ${Date.now()} && sleep 20\n`,
      });
      try {
        const child = startAirlock([...runOn(engine), '--verbose', '--', 'sh', '-c', 'echo the-command-ran'], { cwd });
        const result = collect(child);
        let err = '';
        child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
        await waitFor('the build to reach its slow step', () => /sleep 20/.test(err), 60000);
        const stoppedAt = Date.now();
        child.kill('SIGTERM');
        const r = await result;
        assert.equal(r.code, 143, r.stderr);
        assert.ok(Date.now() - stoppedAt < 15000, 'the build was not aborted');
        assert.doesNotMatch(r.stdout.toString(), /the-command-ran/);
        assert.deepEqual(await airlockContainers(engine), []);
        if (engine === 'podman') {
          const storage = await exec(['podman', 'ps', '--all', '--external', '--format', '{{.Names}}']);
          const left = storage.stdout
            .split('\n')
            .filter(
              (n) => n.startsWith(`airlock-abort-base-${process.pid}-`) || n.startsWith(`airlock-build-${child.pid}-`),
            );
          assert.deepEqual(left, [], 'the interrupted build left its working container');
          const tags = await exec(['podman', 'images', '--format', '{{.Repository}}']);
          assert.doesNotMatch(tags.stdout, new RegExp(`airlock-build-${child.pid}-`), 'the build alias tags were left');
        }
      } finally {
        if (engine === 'podman') {
          const leftovers = await exec(['podman', 'ps', '--all', '--external', '--format', '{{.Names}}']);
          const ours = leftovers.stdout.split('\n').filter((n) => n.startsWith(`airlock-abort-base-${process.pid}-`));
          if (ours.length > 0) await exec(['podman', 'rm', '--force', ...ours]);
        }
        await exec([engine, 'rmi', base]);
      }
    });

    it('removes the container of a run killed with SIGKILL on the next run, and nothing else', async () => {
      const cwd = await workspace(sandboxYaml());
      // A container that looks like a live airlock run's (this test process is alive) must survive,
      // and so must a container that airlock did not create at all.
      const live = `airlock-live-${process.pid}`;
      const foreign = `not-airlock-${process.pid}`;
      const start = readFileSync(`/proc/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19]!;
      await exec([engine, 'rm', '--force', live, foreign]);
      const created = await exec([
        engine,
        'create',
        '--name',
        live,
        '--label',
        'io.airlock.run=livetest',
        '--label',
        `io.airlock.owner-pid=${process.pid}`,
        '--label',
        `io.airlock.owner-start=${start}`,
        '--label',
        `io.airlock.owner-host=${hostname()}`,
        TEST_IMAGE,
        'true',
      ]);
      assert.equal(created.code, 0, created.stderr);
      assert.equal((await exec([engine, 'create', '--name', foreign, TEST_IMAGE, 'true'])).code, 0);
      try {
        const child = startAirlock([...runOn(engine), '--', 'sh', '-c', 'echo ready; sleep 300'], { cwd });
        const result = collect(child);
        let out = '';
        child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        await waitFor('the command to start', () => out.includes('ready'));
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
        // The killed run's engine client keeps running (it has its own process group), and so does its container.
        // Another airlock process on this machine may remove it first; either way it must be gone after ours.
        const orphan = (await airlockContainers(engine)).filter((n) => n.startsWith('airlock-run-'));

        const next = await airlock([...runOn(engine), '--', 'true'], { cwd });
        assert.equal(next.code, 0, next.stderr);
        await result;
        const remaining = await airlockContainers(engine);
        for (const name of orphan) assert.ok(!remaining.includes(name), `orphan ${name} was not removed`);
        assert.ok(remaining.includes(live), 'a live run’s container was removed');
        const foreignStill = await exec([engine, 'container', 'inspect', '--format', '{{.Name}}', foreign]);
        assert.equal(foreignStill.code, 0, 'a container airlock did not create was removed');
      } finally {
        await exec([engine, 'rm', '--force', live, foreign]);
      }
      assert.ok(!existsSync(join(cwd, 'term')));
    });
  });
}
