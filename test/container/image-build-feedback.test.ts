import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { airlock, ENGINE_SUITES, exec, prepareEngine, runOn, TEST_IMAGE, workspace } from './harness.js';

/**
 * What a repository image build tells the user: a line per step in a CI log, a base image that is not there fails
 * at once and says so, Podman's internal dumps never reach the message, and old images do not pile up.
 */

const dockerfile = (steps: string) => ({ '.airlock/container/Dockerfile': `FROM ${TEST_IMAGE}\n${steps}` });

for (const { engine, skip } of ENGINE_SUITES) {
  describe(`image build feedback on ${engine}`, { skip, timeout: 600_000 }, () => {
    before(() => prepareEngine(engine));

    it('prints one line per build step with the elapsed time when stderr is not a terminal', async () => {
      const cwd = await workspace('network_sandbox: false\n', dockerfile(`RUN echo ${Date.now()} > /a\nRUN true\n`));
      const r = await airlock([...runOn(engine), '--', 'cat', '/a'], { cwd });
      assert.equal(r.code, 0, r.stderr);
      for (const step of [1, 2, 3]) {
        assert.match(
          r.stderr,
          new RegExp(`^airlock: building airlock-repo:[0-9a-f]{12}…: step ${step}/\\d \\(\\d+s\\)`, 'm'),
        );
      }
      assert.match(
        r.stderr,
        new RegExp(`^airlock: building airlock-repo:[0-9a-f]{12}…: step 1/\\d \\(\\d+s\\): FROM ${TEST_IMAGE}$`, 'm'),
      );
      assert.match(
        r.stderr,
        /^airlock: building airlock-repo:[0-9a-f]{12}…: step 2\/\d \(\d+s\): RUN echo \d+ > \/a$/m,
      );
      assert.match(r.stderr, /^airlock: built airlock-repo:[0-9a-f]{12}… in \d+s$/m);
    });

    it('a base image that is not present fails at once with a clear message, never asking a registry', async () => {
      const missing = `localhost/airlock-no-such-base-${process.pid}:1`;
      const cwd = await workspace('network_sandbox: false\n', {
        '.airlock/container/Dockerfile': `FROM ${missing}\nRUN true\n`,
      });
      const r = await airlock([...runOn(engine), '--', 'true'], { cwd });
      assert.equal(r.code, 125, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(`base image ${missing} named at \\S+Dockerfile:1 \\(FROM\\) is not present locally, and localhost/`),
      );
      assert.doesNotMatch(r.stderr, /Trying to pull|retrying|pinging|STEP|Step/);

      // COPY --from names an image too: the same, before anything is built.
      const copy = await workspace('network_sandbox: false\n', dockerfile(`COPY --from=${missing} /x /x\n`));
      const c = await airlock([...runOn(engine), '--', 'true'], { cwd: copy });
      assert.equal(c.code, 125, c.stderr);
      assert.match(c.stderr, /Dockerfile:2 \(COPY --from\) is not present locally/);
    });

    it('a base image elsewhere is pulled once, explicitly, and its failure named (a loopback registry here)', async () => {
      const cwd = await workspace('network_sandbox: false\n', {
        '.airlock/container/Dockerfile': 'FROM 127.0.0.1:9/airlock/none:1\nRUN true\n',
      });
      const r = await airlock([...runOn(engine), '--', 'true'], { cwd });
      assert.equal(r.code, 125, r.stderr);
      assert.match(r.stderr, /pulling base image 127\.0\.0\.1:9\/airlock\/none:1 \(\S+Dockerfile:1 \(FROM\)\)/);
      assert.match(r.stderr, /is not present locally and could not be pulled: .*refused/);
      assert.doesNotMatch(r.stderr, /image build failed/, 'the build itself never started');
    });

    if (engine === 'podman') {
      it("a Dockerfile Podman cannot read fails in one line, without Podman's struct dumps", async () => {
        const cwd = await workspace('network_sandbox: false\n', dockerfile('FROOM x\n'));
        const r = await airlock([...runOn(engine), '--', 'true'], { cwd });
        assert.equal(r.code, 125, r.stderr);
        assert.match(
          r.stderr,
          /image build failed for airlock-repo:\S+ \(podman exited \d+\): .*Unknown instruction: "FROOM"\n/,
        );
        assert.doesNotMatch(r.stderr, /imagebuilder|&[a-z]+\.[A-Z]\w*\{|UNHANDLED/);
      });
    }

    it('keeps the newest --keep-images images built from one Dockerfile and removes the older ones', async () => {
      const cwd = await workspace('network_sandbox: false\n', dockerfile('RUN echo 0 > /n\n'));
      const file = join(cwd, '.airlock/container/Dockerfile');
      const labelled = async () => {
        const r = await exec([
          engine,
          'image',
          'ls',
          '--no-trunc',
          '--filter',
          `label=io.airlock.repo-dockerfile=${file}`,
          '--format',
          '{{.ID}}',
        ]);
        return new Set(r.stdout.split('\n').filter(Boolean));
      };
      const builtIds: string[] = [];
      try {
        for (const n of [1, 2, 3, 4]) {
          await writeFile(file, `FROM ${TEST_IMAGE}\nRUN echo ${n}-${Date.now()} > /n\n`);
          const r = await airlock([...runOn(engine), '--keep-images', '2', '--', 'cat', '/n'], { cwd });
          assert.equal(r.code, 0, r.stderr);
          assert.match(r.stdout.toString(), new RegExp(`^${n}-`));
          const hash = await airlock(['image', 'hash'], { cwd });
          const tag = `airlock-repo:${/^repo=([0-9a-f]{64})$/m.exec(hash.stdout.toString())![1]}`;
          builtIds.push((await exec([engine, 'image', 'inspect', '--format', '{{.Id}}', tag])).stdout.trim());
        }
        const left = await labelled();
        assert.equal(left.size, 2, `images left: ${[...left].join(', ')}`);
        const bare = [...left].map((id) => id.replace(/^sha256:/, ''));
        for (const id of builtIds.slice(-2))
          assert.ok(bare.includes(id.replace(/^sha256:/, '')), `newest ${id} was removed`);
      } finally {
        for (const id of await labelled()) await exec([engine, 'rmi', '--force', id]);
      }
    });
  });
}
