import assert from 'node:assert/strict';
import { proxyBundlePath } from '../../src/cli/session/proxy-image.js';
import { existsSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { airlock, ENGINE_SUITES, exec, prepareEngine, runOn, TEST_IMAGE, workspace } from './harness.js';

/** `image hash` and `image save` cover the proxy image too, whose input is the built proxy bundle. */
function requireProxyBundle(): void {
  if (!existsSync(proxyBundlePath())) {
    throw new Error(`${proxyBundlePath()} is missing: run \`npm run build\` before the container suite`);
  }
}

/** A repo whose Dockerfile stamps each build with a random id, so a test can tell reuse from rebuild. */
async function repo(extraStep = ''): Promise<string> {
  return workspace('network_sandbox: false\n', {
    '.airlock/container/Dockerfile': `FROM ${TEST_IMAGE}\nCOPY stamp-input /stamp-input\nRUN cat /proc/sys/kernel/random/uuid > /build-id\n${extraStep}`,
    '.airlock/container/stamp-input': `${process.pid}-${Date.now()}-${Math.random()}\n`,
  });
}

const buildId = ['--', 'cat', '/build-id'];

for (const { engine, skip } of ENGINE_SUITES) {
  describe(`repo image build, reuse, staleness and image commands on ${engine}`, { skip }, () => {
    before(() => prepareEngine(engine));

    it('builds container/Dockerfile once, reuses it, and rebuilds with --max-image-age 0', async () => {
      const cwd = await repo();
      const first = await airlock([...runOn(engine), ...buildId], { cwd });
      assert.equal(first.code, 0, first.stderr);
      const again = await airlock([...runOn(engine), ...buildId], { cwd });
      assert.equal(again.stdout.toString(), first.stdout.toString(), 'a fresh image was rebuilt');
      const stale = await airlock([...runOn(engine), '--max-image-age', '0', ...buildId], { cwd });
      assert.equal(stale.code, 0, stale.stderr);
      assert.notEqual(stale.stdout.toString(), first.stdout.toString(), 'max age 0 did not rebuild (without cache)');
    });

    it('builds a new image when a file in the context changes', async () => {
      const cwd = await repo();
      const first = await airlock([...runOn(engine), ...buildId], { cwd });
      await writeFile(join(cwd, '.airlock/container/stamp-input'), 'changed\n');
      const second = await airlock([...runOn(engine), '--', 'cat', '/stamp-input', '/build-id'], { cwd });
      assert.equal(second.code, 0, second.stderr);
      assert.match(second.stdout.toString(), /^changed\n/);
      assert.ok(!second.stdout.toString().endsWith(first.stdout.toString()), 'the old image was reused');
    });

    it('lets concurrent runs share one build of the same tag', async () => {
      const cwd = await repo('RUN sleep 2\n');
      const runs = await Promise.all([1, 2, 3].map(() => airlock([...runOn(engine), ...buildId], { cwd })));
      for (const r of runs) assert.equal(r.code, 0, r.stderr);
      const ids = new Set(runs.map((r) => r.stdout.toString()));
      assert.equal(ids.size, 1, 'concurrent runs built the image more than once');
    });

    it('exits 125 with the tail of the build log when the build fails, and leaves no build container', async () => {
      const before = await exec([engine, 'ps', '-aq']);
      const cwd = await repo('RUN echo "the-build-broke-here" && exit 3\n');
      const r = await airlock([...runOn(engine), '--', 'true'], { cwd });
      assert.equal(r.code, 125);
      assert.match(r.stderr, /image build failed/);
      assert.match(r.stderr, /the-build-broke-here/);
      assert.equal(r.stdout.length, 0);
      const known = new Set(before.stdout.split('\n').filter(Boolean));
      const left = (await exec([engine, 'ps', '-aq'])).stdout.split('\n').filter((id) => id && !known.has(id));
      assert.deepEqual(left, [], "the failed step's container was removed (--force-rm)");
    });

    it('image hash prints repo=<sha256>; save and load round-trip the image', async () => {
      requireProxyBundle();
      const cwd = await repo();
      const hash = await airlock(['image', 'hash'], { cwd });
      assert.equal(hash.code, 0, hash.stderr);
      const lines = hash.stdout.toString().split('\n');
      assert.match(lines[0]!, /^repo=[0-9a-f]{64}$/);
      assert.match(lines[1]!, /^proxy=[0-9a-f]{64}$/);
      assert.deepEqual(lines.slice(2), [''], 'image hash prints exactly two lines');
      const tag = `airlock-repo:${lines[0]!.slice('repo='.length)}`;

      const dir = await mkdtemp(join(tmpdir(), 'airlock-ct-cache-'));
      const save = await airlock(['image', 'save', dir, '--engine', engine], { cwd });
      assert.equal(save.code, 0, save.stderr);
      assert.ok(existsSync(join(dir, 'repo.tar')));
      assert.ok(existsSync(join(dir, 'proxy.tar')));
      assert.equal((await exec([engine, 'image', 'inspect', '--format', '{{.Id}}', tag])).code, 0);

      assert.equal((await exec([engine, 'rmi', '--force', tag])).code, 0);
      assert.notEqual((await exec([engine, 'image', 'inspect', '--format', '{{.Id}}', tag])).code, 0);
      const load = await airlock(['image', 'load', dir, '--engine', engine], { cwd });
      assert.equal(load.code, 0, load.stderr);
      assert.equal(
        (await exec([engine, 'image', 'inspect', '--format', '{{.Id}}', tag])).code,
        0,
        'load did not restore',
      );

      const empty = await mkdtemp(join(tmpdir(), 'airlock-ct-empty-'));
      assert.equal((await airlock(['image', 'load', empty, '--engine', engine], { cwd })).code, 0);
    });
  });

  describe(`embedded default image on ${engine}`, { skip }, () => {
    it('runs the host toolchain with zero config: node, a fresh /etc, a read-only /usr', async () => {
      const cwd = await workspace('network_sandbox: false\n', {
        'test.js':
          'console.log("node", process.version === require("process").version, require("os").userInfo().username)',
      });
      const r = await airlock([...runOn(engine), '--', 'node', 'test.js'], { cwd });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), 'node true root\n');

      const probe = await airlock(
        [
          ...runOn(engine),
          '--',
          'sh',
          '-c',
          'cut -d: -f1 /etc/passwd | tr "\\n" " "; ls /etc/apt 2>/dev/null || echo no-host-etc; touch /usr/x 2>/dev/null || echo usr-ro',
        ],
        { cwd },
      );
      assert.equal(probe.code, 0, probe.stderr);
      assert.equal(probe.stdout.toString(), 'root nobody no-host-etc\nusr-ro\n');
    });
  });
}
