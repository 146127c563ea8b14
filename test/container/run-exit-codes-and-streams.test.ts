import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { notEnforcedWarning, unenforcedLimits } from '../helpers/world.js';
import { airlock, airlockContainers, ENGINE_SUITES, prepareEngine, runOn, sandboxYaml, workspace } from './harness.js';

for (const { engine, skip } of ENGINE_SUITES) {
  describe(`exit codes and streams on ${engine}`, { skip }, () => {
    before(() => prepareEngine(engine));

    it('passes the command’s exit code through', async () => {
      const cwd = await workspace(sandboxYaml());
      for (const code of [0, 3, 42]) {
        const r = await airlock([...runOn(engine), '--', 'sh', '-c', `exit ${code}`], { cwd });
        assert.equal(r.code, code, r.stderr);
      }
    });

    it('passes stdout and stderr through byte for byte, including invalid UTF-8 and no final newline', async () => {
      const cwd = await workspace(sandboxYaml());
      const script = "printf '\\000\\377\\376ok\\r\\n\\342\\202'; printf 'to-stderr\\377' >&2";
      const r = await airlock([...runOn(engine), '--', 'sh', '-c', script], { cwd });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout, Buffer.from([0, 0xff, 0xfe, 0x6f, 0x6b, 0x0d, 0x0a, 0xe2, 0x82]));
      assert.ok(r.stderr.includes('to-stderr'), r.stderr);
    });

    it('pipes stdin to the command and closes it at EOF', async () => {
      const cwd = await workspace(sandboxYaml());
      const input = Buffer.from('line one\nline two\n\u00e9\n');
      const r = await airlock([...runOn(engine), '--', 'sh', '-c', 'cat; echo done'], { cwd, input });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), `${input.toString()}done\n`);
    });

    it('kills the container and exits 124 on --timeout', async () => {
      const cwd = await workspace(sandboxYaml());
      const started = Date.now();
      const r = await airlock([...runOn(engine), '--timeout', '10', '--', 'sleep', '120'], { cwd });
      assert.equal(r.code, 124, r.stderr);
      assert.ok(Date.now() - started < 40000, 'the timeout did not fire in time');
      assert.match(r.stderr, /timed out/);
      assert.deepEqual(await airlockContainers(engine), []);
    });

    it('exits 137 with a hint when the command runs out of memory (where memory is enforced; else says so)', async () => {
      const cwd = await workspace(sandboxYaml('resource_limits:\n  memory: 64m\n'));
      const hog = 'a = bytearray(512 * 1024 * 1024); print(len(a))';
      const r = await airlock([...runOn(engine), '--', 'python3', '-c', hog], { cwd });
      if ((await unenforcedLimits(engine)).has('memory')) {
        // Rootless Podman on cgroup v1: the 512 MiB hog is not contained, and the run said so before it started.
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, notEnforcedWarning('memory', '64m'));
        return;
      }
      assert.equal(r.code, 137, r.stderr);
      assert.match(r.stderr, /resource_limits\.memory/);
      assert.doesNotMatch(r.stderr, /NOT enforced/);
    });

    it('exits 125 for a bad configuration, a missing engine, or an image the engine cannot run', async () => {
      const bad = await workspace('resource_limits:\n  memory: lots\n');
      const config = await airlock([...runOn(engine), '--', 'true'], { cwd: bad });
      assert.equal(config.code, 125, config.stderr);
      assert.match(config.stderr, /memory/);

      const cwd = await workspace(sandboxYaml());
      const noEngine = await airlock([...runOn(engine), '--', 'true'], { cwd, env: { PATH: '/nonexistent' } });
      assert.equal(noEngine.code, 125, noEngine.stderr);
      assert.match(noEngine.stderr, /not installed/);

      const missing = await workspace('network_sandbox: false\nimage: localhost/airlock-no-such-image:1\n');
      const image = await airlock([...runOn(engine), '--', 'true'], { cwd: missing });
      assert.equal(image.code, 125, image.stderr);
    });

    it('tells an engine failure to start the container (125) from a command that itself exits 125-127', async () => {
      const cwd = await workspace(sandboxYaml(), { 'file.txt': 'a file, not a directory\n' });
      const broken = await airlock([...runOn(engine), '--mount', 'file.txt:/usr:ro', '--', 'true'], { cwd });
      assert.equal(broken.code, 125, broken.stderr);
      assert.match(broken.stderr, /could not start the container/);
      for (const code of [125, 126, 127]) {
        const own = await airlock([...runOn(engine), '--', 'sh', '-c', `exit ${code}`], { cwd });
        assert.equal(own.code, code, own.stderr);
        assert.doesNotMatch(own.stderr, /could not start/);
      }
    });

    it('a command missing from the image exits 127 naming it; one that is not executable exits 126', async () => {
      const cwd = await workspace(sandboxYaml());
      const missing = await airlock([...runOn(engine), '--', 'no-such-command-i19', 'arg'], { cwd });
      assert.equal(missing.code, 127, missing.stderr);
      assert.match(missing.stderr, /'no-such-command-i19' was not found in the container/);
      for (const path of ['/etc/passwd', '/etc']) {
        const denied = await airlock([...runOn(engine), '--', path], { cwd });
        assert.equal(denied.code, 126, denied.stderr);
        assert.match(denied.stderr, new RegExp(`'${path}' cannot be executed in the container`));
      }
      // A command that exits 127 itself (a shell's "not found") keeps its own code and airlock adds nothing.
      const shell = await airlock([...runOn(engine), '--', 'sh', '-c', 'no-such-command-i19'], { cwd });
      assert.equal(shell.code, 127, shell.stderr);
      assert.doesNotMatch(shell.stderr, /was not found in the container|could not start/);
    });

    it('sets IS_SANDBOX=1 in the container, over any value the configuration gives', async () => {
      const cwd = await workspace(sandboxYaml('env:\n  IS_SANDBOX: "0"\n'));
      const r = await airlock([...runOn(engine), '--', 'sh', '-c', 'echo "IS_SANDBOX=$IS_SANDBOX"'], { cwd });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), 'IS_SANDBOX=1\n');
    });

    it('network_sandbox: true (the default) runs the command behind the proxy, never on an open network', async () => {
      const cwd = await workspace(`image: localhost/airlock-test-debian:bookworm\n`, { marker: 'x' });
      const script =
        'echo ran; echo one=$(getent hosts one.example | cut -d" " -f1); echo two=$(getent hosts two.example | cut -d" " -f1)';
      const r = await airlock([...runOn(engine), '--', 'sh', '-c', script], { cwd });
      assert.equal(r.code, 0, r.stderr.toString());
      const out = r.stdout.toString();
      assert.match(out, /^ran$/m);
      const one = /^one=(\d+\.\d+\.\d+\.\d+)$/m.exec(out)?.[1];
      assert.ok(one, `names resolve: ${out}`);
      // Made-up names resolving at all, and to one address, is the proxy's catch-all responder answering.
      assert.match(out, new RegExp(`^two=${one.replace(/\./g, '\\.')}$`, 'm'));
    });

    it('removes its container on every path', async () => {
      assert.deepEqual(await airlockContainers(engine), []);
    });
  });
}
