import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { engineFlag, parseWholeNumber, splitAtDoubleDash } from '../../src/cli/commands/options.js';
import { run } from '../../src/cli/commands/run.js';
import { containerEnvironment, exitCodeFor } from '../../src/cli/session/sandboxed-command.js';
import { UsageError } from '../../src/cli/errors.js';
import { createLogger } from '../../src/cli/session/log.js';
import { parseMountFlag, resolveMounts } from '../../src/cli/session/mounts.js';

function quietLog() {
  const stderr = new PassThrough();
  let text = '';
  stderr.on('data', (d: Buffer) => (text += d.toString()));
  return { log: createLogger({ cwd: '/', stderr, isTTY: false }), text: () => text };
}

describe('run command line', () => {
  it('splits at the first -- and keeps the rest verbatim', () => {
    assert.deepEqual(splitAtDoubleDash(['--verbose', '--', 'sh', '--', '-c', 'x']), {
      options: ['--verbose'],
      command: ['sh', '--', '-c', 'x'],
    });
    assert.deepEqual(splitAtDoubleDash(['--verbose']), { options: ['--verbose'], command: null });
  });

  it('rejects a missing command, unknown options and bad numbers as usage errors (exit 2)', async () => {
    const ctx = { cwd: '/', env: {}, stdout: new PassThrough(), stderr: new PassThrough(), isTTY: false };
    await assert.rejects(run(['--verbose'], ctx), UsageError);
    await assert.rejects(run(['--'], ctx), UsageError);
    await assert.rejects(run(['--bogus', '--', 'true'], ctx), /bogus/);
    await assert.rejects(run(['--timeout', '9', '--', 'true'], ctx), UsageError);
    await assert.rejects(run(['--timeout=1.5', '--', 'true'], ctx), UsageError);
    await assert.rejects(run(['--max-image-age', '-1', '--', 'true'], ctx));
    await assert.rejects(run(['--engine', 'lxc', '--', 'true'], ctx), UsageError);
    assert.equal(parseWholeNumber('--timeout', '10', 10), 10);
    assert.equal(parseWholeNumber('--max-image-age', '0', 0), 0);
  });

  it('accepts --container-command as an alias of --engine, but not both', () => {
    assert.equal(engineFlag({ 'container-command': 'docker' }), 'docker');
    assert.equal(engineFlag({ engine: 'podman' }), 'podman');
    assert.equal(engineFlag({}), undefined);
    assert.throws(() => engineFlag({ engine: 'podman', 'container-command': 'docker' }), UsageError);
  });

  it('parses mounts: rw by default, ro on request, absolute destinations only', () => {
    assert.deepEqual(parseMountFlag('data:/data'), { source: 'data', target: '/data', readOnly: false });
    assert.deepEqual(parseMountFlag('/x:/y/:ro'), { source: '/x', target: '/y', readOnly: true });
    for (const bad of ['x', 'x:/y:rx', 'a:b:c:d', ':/y', 'x:relative', 'x:']) {
      assert.throws(() => parseMountFlag(bad), UsageError, bad);
    }
  });

  it("refuses a working directory with ':' in its path as a usage error, not an internal one", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-a:b-'));
    try {
      await assert.rejects(
        resolveMounts(dir, []),
        (e: Error) => e instanceof UsageError && /contains ':'/.test(e.message),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('container environment', () => {
  it('merges env, then pass_env (only variables set on the host), then surrogates, then network', () => {
    const env = containerEnvironment(
      { A: 'env', B: 'env', C: 'env', D: 'env' },
      ['B', 'UNSET', 'HOSTONLY'],
      { B: 'host', HOSTONLY: 'h', NOT_LISTED: 'secret' },
      { C: 'surrogate', D: 'surrogate' },
      { D: 'network' },
    );
    assert.deepEqual(env, { A: 'env', B: 'host', C: 'surrogate', D: 'network', HOSTONLY: 'h', IS_SANDBOX: '1' });
  });

  it('takes nothing from the host environment that is not listed', () => {
    const env = containerEnvironment({}, [], { PATH: '/x', HOME: '/root', GITHUB_TOKEN: 't' }, {}, {});
    assert.deepEqual(env, { IS_SANDBOX: '1' });
  });

  it('sets IS_SANDBOX=1 last, as Airut’s entrypoint does, whatever the config says', () => {
    const env = containerEnvironment({ IS_SANDBOX: '0' }, ['IS_SANDBOX'], { IS_SANDBOX: 'no' }, {}, {});
    assert.equal(env.IS_SANDBOX, '1');
  });
});

describe('exit codes', () => {
  it('passes the command’s own code through', () => {
    const { log } = quietLog();
    for (const code of [0, 1, 2, 42, 125, 126, 127, 255]) {
      assert.equal(exitCodeFor({ kind: 'exited', code, oomKilled: false }, false, log), code);
    }
  });

  it('maps a command the init could not execute to 127 (not found) or 126 (not executable), naming it', () => {
    const missing = quietLog();
    const notFound = { code: 127 as const, reason: 'No such file or directory' };
    assert.equal(exitCodeFor({ kind: 'exec-failed', command: 'nope', failure: notFound }, false, missing.log), 127);
    assert.match(missing.text(), /'nope' was not found in the container/);
    const denied = quietLog();
    const notExecutable = { code: 126 as const, reason: 'Permission denied' };
    assert.equal(exitCodeFor({ kind: 'exec-failed', command: '/etc', failure: notExecutable }, false, denied.log), 126);
    assert.match(denied.text(), /'\/etc' cannot be executed/);
  });

  it('maps timeout to 124, a start failure and sandbox failure to 125, signals to 128+n', () => {
    const { log } = quietLog();
    assert.equal(exitCodeFor({ kind: 'timeout', seconds: 10 }, false, log), 124);
    assert.equal(exitCodeFor({ kind: 'not-started', code: 127 }, false, log), 125);
    assert.equal(exitCodeFor({ kind: 'sandbox-failure', reason: 'proxy died' }, false, log), 125);
    assert.equal(exitCodeFor({ kind: 'signal', signal: 'SIGINT' }, false, log), 130);
    assert.equal(exitCodeFor({ kind: 'signal', signal: 'SIGTERM' }, false, log), 143);
  });

  it('gives 137 with a hint to raise the memory limit on OOM', () => {
    const oom = quietLog();
    assert.equal(exitCodeFor({ kind: 'exited', code: 137, oomKilled: true }, true, oom.log), 137);
    assert.match(oom.text(), /resource_limits\.memory/);
    const plain = quietLog();
    assert.equal(exitCodeFor({ kind: 'exited', code: 137, oomKilled: false }, false, plain.log), 137);
    assert.equal(plain.text(), '', 'a SIGKILL without a memory limit is not called OOM');
  });
});
