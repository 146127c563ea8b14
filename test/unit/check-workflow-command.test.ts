import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { run } from '../../src/cli/commands/check-workflow.js';
import { RULES } from '../../src/cli/workflow/check.js';

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

  void it('--format github prints one ::error workflow command per finding, escaped, with file and line', async () => {
    const file = 'test/fixtures/workflows/bad-step-after-airlock.yml';
    const text = await checkWorkflow([file]);
    const r = await checkWorkflow(['--format', 'github', file]);
    assert.equal(r.code, 1);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, text.stdout.trimEnd().split('\n').length);
    for (const line of lines) {
      assert.match(
        line,
        new RegExp(`^::error file=${file},line=\\d+,title=airlock check-workflow%3A step-after-airlock::\\S`),
      );
    }
    // What GitHub's parser would unescape: a comma, colon or newline in a value must not end it early.
    const { githubAnnotation } = await import('../../src/cli/workflow/report.js');
    assert.equal(
      githubAnnotation({
        file: 'a,b:c.yml',
        line: 3,
        rule: 'expression-injection',
        severity: 'error',
        message: '50% of\nit',
      }),
      '::error file=a%2Cb%3Ac.yml,line=3,title=airlock check-workflow%3A expression-injection::50%25 of%0Ait',
    );
  });

  void it('--format sarif is SARIF 2.1.0, valid against its schema, with every finding located', async () => {
    const require = createRequire(import.meta.url);
    type Validate = ((data: unknown) => boolean) & { errors?: unknown };
    type SchemaValidator = { compile(schema: object): Validate };
    const { default: Ajv } = require('ajv-draft-04') as { default: new (options: object) => SchemaValidator };
    const { default: addFormats } = require('ajv-formats') as { default: (ajv: SchemaValidator) => void };
    const schema = require('@microsoft/jest-sarif/lib/schemas/sarif-2.1.0-rtm.5.json') as object;
    // The published schema has a pattern that is not valid in Unicode mode; it is matched as a plain RegExp.
    const ajv = new Ajv({ allErrors: true, strict: false, unicodeRegExp: false });
    addFormats(ajv);
    const validate = ajv.compile(schema);
    const files = [
      'test/fixtures/workflows/bad-expression-injection.yml',
      'test/fixtures/workflows/bad-trigger-list.yml',
    ];
    const r = await checkWorkflow(['--format', 'sarif', ...files]);
    assert.equal(r.code, 1);
    const log = JSON.parse(r.stdout) as {
      version: string;
      runs: Array<{
        tool: { driver: { rules: Array<{ id: string }> } };
        results: Array<{
          ruleId: string;
          ruleIndex: number;
          locations: Array<{ physicalLocation: { artifactLocation: { uri: string }; region: { startLine: number } } }>;
        }>;
      }>;
    };
    assert.ok(validate(log), JSON.stringify(validate.errors, null, 2));
    assert.equal(log.version, '2.1.0');
    const run0 = log.runs[0]!;
    assert.deepEqual(
      run0.tool.driver.rules.map((rule) => rule.id),
      Object.keys(RULES),
    );
    const json = JSON.parse((await checkWorkflow(['--json', ...files])).stdout) as {
      findings: Array<{ file: string; line: number; rule: string }>;
    };
    assert.deepEqual(
      run0.results.map((res) => [
        res.locations[0]!.physicalLocation.artifactLocation.uri,
        res.locations[0]!.physicalLocation.region.startLine,
        res.ruleId,
      ]),
      json.findings.map((f) => [f.file, f.line, f.rule]),
    );
    for (const res of run0.results) assert.equal(run0.tool.driver.rules[res.ruleIndex]!.id, res.ruleId);
    // A clean file is a valid log with no results (code scanning then closes earlier alerts).
    const clean = await checkWorkflow(['--format', 'sarif', 'examples/workflows/airlock-push.yml']);
    assert.equal(clean.code, 0);
    const cleanLog = JSON.parse(clean.stdout) as { runs: Array<{ results: unknown[] }> };
    assert.ok(validate(cleanLog), JSON.stringify(validate.errors));
    assert.deepEqual(cleanLog.runs[0]!.results, []);
  });

  void it('rejects an unknown --format, and --json with another format', async () => {
    const bad = await checkWorkflow(['--format', 'xml', 'x.yml']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--format must be one of text, json, github, sarif/);
    assert.equal((await checkWorkflow(['--json', '--format', 'sarif', 'x.yml'])).code, 2);
  });
});
