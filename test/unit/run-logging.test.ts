import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { UsageError } from '../../src/cli/errors.js';
import { createLogger } from '../../src/cli/session/log.js';

function sink() {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (d: Buffer) => (text += d.toString()));
  return { stream, text: () => text };
}

describe('airlock run logging', () => {
  it('is quiet by default: only warnings and errors, on stderr', async () => {
    const err = sink();
    const log = createLogger({ cwd: '/', stderr: err.stream, isTTY: false });
    log.info('progress');
    log.debug('argv');
    log.stream(Buffer.from('build output'));
    log.warn('careful');
    log.error('broken');
    await log.close();
    assert.equal(err.text(), 'airlock: warning: careful\nairlock: error: broken\n');
  });

  it('--verbose adds progress and build output, --debug adds engine command lines', async () => {
    const verbose = sink();
    const v = createLogger({ verbose: true, cwd: '/', stderr: verbose.stream, isTTY: false });
    v.info('progress');
    v.debug('argv');
    v.stream(Buffer.from('STEP 1/2\n'));
    assert.equal(verbose.text(), 'airlock: progress\nSTEP 1/2\n');
    const debug = sink();
    const d = createLogger({ debug: true, cwd: '/', stderr: debug.stream, isTTY: false });
    d.debug('podman run …');
    assert.equal(debug.text(), 'airlock: podman run …\n');
  });

  it('--log FILE appends timestamped lines to the file (parents created) and leaves stderr empty', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-log-'));
    try {
      const err = sink();
      const file = join(dir, 'nested/airlock.log');
      for (const message of ['first', 'second']) {
        const log = createLogger({ verbose: true, file, cwd: dir, stderr: err.stream, isTTY: true });
        assert.equal(log.interactive, false, 'no progress line drawn while logging to a file');
        log.info(message);
        await log.close();
      }
      const lines = (await readFile(file, 'utf8')).trimEnd().split('\n');
      assert.equal(lines.length, 2);
      assert.match(lines[0]!, /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \[INFO\] airlock: first$/);
      assert.match(lines[1]!, /\[INFO\] airlock: second$/);
      assert.equal(err.text(), '');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('--log FILE that cannot be written is a usage error up front, not a silently lost log', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'airlock-log-'));
    try {
      await writeFile(join(dir, 'a-file'), '');
      for (const file of [join(dir, 'a-file', 'airlock.log'), dir]) {
        assert.throws(
          () => createLogger({ file, cwd: dir, stderr: sink().stream, isTTY: false }),
          (e: Error) => e instanceof UsageError && e.message.startsWith(`--log ${file}: cannot write there`),
        );
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
