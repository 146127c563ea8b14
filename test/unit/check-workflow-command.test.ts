import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { run } from '../../src/cli/commands/check-workflow.js';

const ROOT = join(import.meta.dirname, '..', '..');

async function checkWorkflow(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const sink = (append: (s: string) => void) =>
    new Writable({
      write(chunk: Buffer, _enc, done) {
        append(chunk.toString());
        done();
      },
    });
  const code = await run(argv, {
    cwd: ROOT,
    env: {},
    stdout: sink((s) => (stdout += s)),
    stderr: sink((s) => (stderr += s)),
    isTTY: false,
  });
  return { code, stdout, stderr };
}

void describe('airlock check-workflow command', () => {
  void it('exits 0 and prints nothing for the README examples', async () => {
    const r = await checkWorkflow([
      'examples/workflows/airlock-pull-request.yml',
      'examples/workflows/airlock-pull-request-secrets.yml',
      'examples/workflows/airlock-push.yml',
    ]);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, '');
  });

  void it('exits 1 with file:line: rule: explanation lines', async () => {
    const file = 'test/fixtures/workflows/bad-step-after-airlock.yml';
    const r = await checkWorkflow([file, 'examples/workflows/airlock-push.yml']);
    assert.equal(r.code, 1);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 2);
    for (const line of lines) assert.match(line, new RegExp(`^${file}:\\d+: step-after-airlock: .+`));
    assert.match(r.stderr, /2 finding\(s\) in 1 file\(s\)/);
  });

  void it('--json gives the same findings as data', async () => {
    const file = 'test/fixtures/workflows/bad-policy-from-pr.yml';
    const r = await checkWorkflow(['--json', file]);
    assert.equal(r.code, 1);
    const out = JSON.parse(r.stdout);
    assert.deepEqual(out.files, [file]);
    assert.equal(out.findings.length, 1);
    assert.deepEqual(
      { file: out.findings[0].file, line: out.findings[0].line, rule: out.findings[0].rule },
      { file, line: 11, rule: 'policy-from-pr' },
    );
    assert.equal(typeof out.findings[0].message, 'string');
  });

  void it('exits 2 without files, on an unknown option, and on a missing file', async () => {
    assert.equal((await checkWorkflow([])).code, 2);
    assert.equal((await checkWorkflow(['--strict', 'x.yml'])).code, 2);
    const missing = await checkWorkflow(['does-not-exist.yml']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /does-not-exist\.yml: no such file/);
  });
});
