import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { canRunOn } from '../../src/cli/workflow/conditions.js';
import { checkWorkflow } from '../../src/cli/workflow/check.js';

const ROOT = join(import.meta.dirname, '..', '..');
const fixture = (name: string) => readFileSync(join(ROOT, 'test/fixtures/workflows', name), 'utf8');

describe('if: conditions under a triggering event', { timeout: 10_000 }, () => {
  it('is never true when it needs another event; maybe otherwise', () => {
    const cases: Array<[string, string, boolean]> = [
      ["github.event_name == 'push'", 'pull_request', false],
      ["github.event_name == 'push'", 'push', true],
      ["${{ github.event_name == 'push' }}", 'pull_request', false],
      ["github.event_name == 'PUSH'", 'push', true], // GitHub compares strings case-insensitively
      ["github.event_name != 'pull_request'", 'pull_request', false],
      ["!(github.event_name == 'pull_request')", 'pull_request', false],
      ["github.event_name == 'push' && github.ref == 'refs/heads/main'", 'pull_request', false],
      ["github.ref == 'refs/heads/main' && github.event_name == 'push'", 'pull_request', false],
      ["github.event_name == 'push' || github.event_name == 'schedule'", 'pull_request', false],
      ["github.event_name == 'push' || github.actor == 'me'", 'pull_request', true],
      ['contains(fromJSON(\'["push", "schedule"]\'), github.event_name)', 'pull_request', false],
      ['contains(fromJSON(\'["push", "schedule"]\'), github.event_name)', 'schedule', true],
      ["startsWith(github.event_name, 'pull_request')", 'pull_request_target', true],
      ["startsWith(github.event_name, 'pull_request')", 'push', false],
      ["always() && github.event_name == 'push'", 'pull_request', false],
      ["success() && github.event_name == 'push'", 'pull_request', false],
      ['false', 'pull_request', false],
      ['0', 'pull_request', false],
      ['github.event.pull_request.head.repo.fork == false', 'pull_request', true],
      ["github.event_name == 'push' || (", 'pull_request', true], // unparseable: assume it can run
      ["format('{0}', github.event_name) == 'push'", 'pull_request', true], // unknown function: maybe
      ["${{ github.event_name }} == 'push'", 'pull_request', true], // mixed text: maybe
    ];
    for (const [condition, event, expected] of cases) {
      assert.equal(canRunOn(condition, event), expected, `${condition} on ${event}`);
    }
    assert.equal(canRunOn(null, 'pull_request'), true);
  });
});

describe("check-workflow honours if: on the event (Airut's website deploy workflow)", { timeout: 10_000 }, () => {
  it('the real workflow has no findings: its production job never runs on a pull request', () => {
    assert.deepEqual(checkWorkflow(fixture('airut/website-deploy.yml'), 'deploy.yml'), []);
    assert.deepEqual(checkWorkflow(fixture('airut/airut-ci.yml'), 'ci.yml'), []);
  });

  it('without that if:, its checkout is PR code and the deploy step gets the secrets: two findings', () => {
    const source = fixture('airut/website-deploy.yml').replace("    if: github.event_name == 'push'\n", '');
    assert.deepEqual(
      checkWorkflow(source, 'deploy.yml').map((f) => f.rule),
      ['persist-credentials', 'pr-code-with-secrets'],
    );
  });

  it('a step-level if: that excludes pull_request makes that checkout not PR code', () => {
    const workflow = `on:
  pull_request:
    branches: [main]
  push:
    branches: [main]
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        if: github.event_name == 'push'
        with:
          persist-credentials: false
      - run: make deploy
        env:
          TOKEN: \${{ secrets.DEPLOY }}
`;
    assert.deepEqual(checkWorkflow(workflow, 'w.yml'), []);
    assert.deepEqual(
      checkWorkflow(workflow.replace("        if: github.event_name == 'push'\n", ''), 'w.yml').map((f) => f.rule),
      ['pr-code-with-secrets'],
    );
  });

  it('a PR trigger that no airlock job runs on needs no protected-branch filter', () => {
    const workflow = `on: [push, pull_request]
jobs:
  sandboxed:
    if: github.event_name == 'push'
    runs-on: ubuntu-latest
    steps:
      - uses: acme/airlock@v1
        with:
          command: make test
`;
    assert.deepEqual(checkWorkflow(workflow, 'w.yml'), []);
    const rules = checkWorkflow(workflow.replace("    if: github.event_name == 'push'\n", ''), 'w.yml').map(
      (f) => f.rule,
    );
    assert.deepEqual(rules, ['pr-trigger-unprotected']);
  });
});
