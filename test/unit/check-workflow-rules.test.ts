import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { checkWorkflow, formatFinding, isAirlockUses, invokesAirlockRun, RULES } from '../../src/cli/workflow/check.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'workflows');
const EXAMPLES = join(import.meta.dirname, '..', '..', 'examples', 'workflows');

function findingsOf(name: string): Array<[number, string]> {
  const file = join(FIXTURES, name);
  return checkWorkflow(readFileSync(file, 'utf8'), name).map((f) => [f.line, f.rule]);
}

void describe('check-workflow flags each broken requirement at its line', () => {
  void it('pull_request triggers without a protected-branch filter (missing, `**`, list form)', () => {
    assert.deepEqual(findingsOf('bad-trigger-unfiltered.yml'), [
      [3, 'pr-trigger-unprotected'],
      [5, 'pr-trigger-unprotected'],
    ]);
    assert.deepEqual(findingsOf('bad-trigger-list.yml'), [[1, 'pr-trigger-unprotected']]);
    assert.deepEqual(findingsOf('bad-trigger-exclusions.yml'), [[2, 'pr-trigger-unprotected']]);
  });

  void it('every step after the airlock step, whatever it is', () => {
    assert.deepEqual(findingsOf('bad-step-after-airlock.yml'), [
      [11, 'step-after-airlock'],
      [15, 'step-after-airlock'],
    ]);
  });

  void it('PR-controlled expressions in run: and github-script, also through env, on the line of the expression', () => {
    // Line 5 (the title into env:) is the safe pattern; line 14 also holds a harmless PR number; the airlock step's
    // `command:` is evaluated inside the sandbox, where the PR author already writes the code.
    assert.deepEqual(findingsOf('bad-expression-injection.yml'), [
      [13, 'expression-injection'],
      [14, 'expression-injection'],
      [15, 'expression-injection'],
      [16, 'expression-injection'],
      [19, 'expression-injection'],
    ]);
  });

  void it('persist-credentials left on in a job that runs airlock or PR code', () => {
    assert.deepEqual(findingsOf('bad-persist-credentials.yml'), [[8, 'persist-credentials']]);
  });

  void it('steps that run PR code outside the sandbox, worse with secrets from any env level', () => {
    assert.deepEqual(findingsOf('bad-pr-code-outside-sandbox.yml'), [
      [15, 'pr-code-with-secrets'],
      [16, 'pr-code-with-secrets'],
      [21, 'pr-code-with-secrets'],
    ]);
    assert.deepEqual(findingsOf('bad-pr-code-no-secrets.yml'), [
      [8, 'persist-credentials'],
      [9, 'pr-code-outside-sandbox'],
      [10, 'pr-code-with-secrets'],
    ]);
  });

  void it('pull_request_target checking out the PR head', () => {
    assert.deepEqual(findingsOf('bad-pr-target-checkout.yml'), [
      [8, 'pr-target-checkout'],
      [12, 'pr-code-with-secrets'],
    ]);
  });

  void it('airlock run on a PR checkout (the PR would choose its own policy) and a local action taken from the PR', () => {
    assert.deepEqual(findingsOf('bad-policy-from-pr.yml'), [[11, 'policy-from-pr']]);
    assert.deepEqual(findingsOf('bad-local-action-from-pr.yml'), [[11, 'pr-code-outside-sandbox']]);
  });

  void it('unreadable YAML is a finding at the error line, not a pass', () => {
    assert.deepEqual(findingsOf('bad-invalid-yaml.yml'), [[7, 'invalid-workflow']]);
  });

  void it('every rule id is documented in docs/github-action.md', () => {
    const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'github-action.md'), 'utf8');
    for (const id of Object.keys(RULES)) assert.match(doc, new RegExp('`' + id + '`'), id);
  });
});

void describe('check-workflow passes workflows that keep the requirements', () => {
  const good = readdirSync(FIXTURES).filter((f) => f.startsWith('good-'));
  for (const name of good) {
    void it(`fixture ${name}`, () => assert.deepEqual(findingsOf(name), []));
  }
  const examples = readdirSync(EXAMPLES).filter((f) => f.endsWith('.yml'));
  void it('has README examples to check', () => assert.ok(examples.length >= 3));
  for (const name of examples) {
    void it(`README example ${name}`, () => {
      const findings = checkWorkflow(readFileSync(join(EXAMPLES, name), 'utf8'), name);
      assert.deepEqual(findings.map(formatFinding), []);
    });
  }
  // The workflows quoted in README.md itself: what users copy first must pass too.
  const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((b) => /^\s*on:/m.test(b));
  void it('README.md quotes at least one workflow', () => assert.ok(blocks.length >= 1));
  for (const [i, block] of blocks.entries()) {
    void it(`README.md workflow ${i + 1}`, () => {
      assert.deepEqual(checkWorkflow(block, `README.md#${i + 1}`).map(formatFinding), []);
    });
  }
});

void describe('recognising the airlock step', () => {
  void it('uses: <owner>/airlock@<ref> and ./, not look-alikes', () => {
    for (const u of ['acme/airlock@v1', 'a.b-c/airlock@0123abc', 'acme/airlock/sub@main', './', '.']) {
      assert.ok(isAirlockUses(u), u);
    }
    for (const u of ['acme/airlock-lite@v1', 'acme/not-airlock@v1', 'acme/airlock', './other', 'airlock@v1']) {
      assert.ok(!isAirlockUses(u), u);
    }
  });

  void it('run: scripts that invoke `airlock run`', () => {
    for (const s of [
      'airlock run -- make',
      'npx airlock run -- x',
      'npx --yes airlock run',
      'set -e\n./node_modules/.bin/airlock run -- x',
    ]) {
      assert.ok(invokesAirlockRun(s), s);
    }
    for (const s of ['airlock image hash', 'echo airlocked run', 'airlockrun']) assert.ok(!invokesAirlockRun(s), s);
  });
});
