import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createOrigin, type FakeOrigin } from './action-origin-fixture.js';

/**
 * The runner obeys `::command::` lines in a step's stdout (set outputs, mask values, annotate, stop commands). The
 * sandbox's output goes to that stdout, so the action brackets it with `::stop-commands::TOKEN` … `::TOKEN::`,
 * where TOKEN is random and never reaches the sandbox: nothing the PR's code prints is a command to the runner.
 * This runs the action's main() on a simulated runner with a stand-in for `airlock run` (action-fake-sandbox.ts).
 */

const FORGED = [
  '::set-output name=exit-code::0',
  '::add-mask::ghs_forged',
  '::error title=forged::the sandbox speaks to the runner',
  '::stop-commands::guess',
];

let root: string;
let origin: FakeOrigin;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'airlock-action-commands-'));
  origin = createOrigin(root, { '.airlock/sandbox.yaml': 'network_sandbox: false\n' }, { 'test.sh': 'true\n' });
});
after(() => rmSync(root, { recursive: true, force: true }));

interface SandboxView {
  argv: string[];
  env: NodeJS.ProcessEnv;
}

interface Sandbox {
  prints?: string[];
  exit?: number;
  throws?: string;
}

/** One action run in its own process (its stdout is the step's log); what the stand-in sandbox was given. */
function runAction(sandbox: Sandbox): { stdout: string; code: number | null; seen: SandboxView; outputs: string } {
  const dir = mkdtempSync(join(root, 'run-'));
  const workspace = join(dir, 'workspace');
  mkdirSync(workspace);
  const eventPath = join(dir, 'event.json');
  writeFileSync(
    eventPath,
    JSON.stringify({ pull_request: { head: { sha: origin.prSha }, base: { ref: origin.baseRef } } }),
  );
  const outputFile = join(dir, 'output.txt');
  writeFileSync(outputFile, '');
  const seenFile = join(dir, 'seen.json');
  const child = spawnSync(
    process.execPath,
    ['--import', import.meta.resolve('tsx'), join(import.meta.dirname, 'action-fake-sandbox.ts')],
    {
      cwd: workspace,
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        GITHUB_EVENT_NAME: 'pull_request',
        GITHUB_EVENT_PATH: eventPath,
        GITHUB_WORKSPACE: workspace,
        GITHUB_SERVER_URL: origin.serverUrl,
        GITHUB_REPOSITORY: origin.repository,
        GITHUB_OUTPUT: outputFile,
        RUNNER_TEMP: dir,
        INPUT_COMMAND: 'sh test.sh',
        INPUT_CACHE: 'false',
        FAKE_SANDBOX_SEEN: seenFile,
        FAKE_SANDBOX_PRINTS: (sandbox.prints ?? []).join('\n'),
        FAKE_SANDBOX_EXIT: String(sandbox.exit ?? 0),
        ...(sandbox.throws ? { FAKE_SANDBOX_THROWS: sandbox.throws } : {}),
      },
    },
  );
  assert.equal(child.error, undefined);
  assert.ok(existsSync(seenFile), `the sandbox never ran: ${child.stderr}\n${child.stdout}`);
  return {
    stdout: child.stdout,
    code: child.status,
    seen: JSON.parse(readFileSync(seenFile, 'utf8')) as SandboxView,
    outputs: readFileSync(outputFile, 'utf8'),
  };
}

/** The token of the stop-commands bracket and the stdout inside it; fails if there is no closed bracket. */
function bracket(stdout: string): { token: string; inside: string; before: string; afterwards: string } {
  const stop = /^::stop-commands::(.*)$/m.exec(stdout);
  assert.ok(stop, `no ::stop-commands:: line in:\n${stdout}`);
  const token = stop[1]!;
  const resume = stdout.indexOf(`\n::${token}::\n`, stop.index);
  assert.ok(resume > 0, 'commands are never resumed');
  return {
    token,
    before: stdout.slice(0, stop.index),
    inside: stdout.slice(stop.index + stop[0].length, resume + 1),
    afterwards: stdout.slice(resume + `\n::${token}::\n`.length),
  };
}

describe('the sandbox cannot send workflow commands to the runner', { timeout: 60_000 }, () => {
  it('everything the sandbox prints sits inside a stop-commands bracket whose token it never sees', async () => {
    const r = runAction({ prints: FORGED });
    assert.equal(r.code, 0, r.stdout);
    const { token, inside, before, afterwards } = bracket(r.stdout);
    assert.match(token, /^[0-9a-f]{32}$/, '128 random bits');
    for (const line of FORGED) {
      assert.ok(inside.includes(line), `${line} is not inside the bracket`);
      assert.ok(!before.includes(line) && !afterwards.includes(line), `${line} escapes the bracket`);
    }
    const view = r.seen;
    assert.ok(!JSON.stringify(view.argv).includes(token), 'the token is on the sandbox command line');
    assert.ok(!JSON.stringify(view.env).includes(token), 'the token is in the environment the sandbox gets');
    // After the bracket the action's own commands work again: its outputs are the real ones.
    assert.match(r.outputs, /^exit-code<<.*\n0\n/m);
  });

  it('the token is fresh for every run', () => {
    const tokens = new Set<string>();
    for (let i = 0; i < 2; i++) tokens.add(bracket(runAction({}).stdout).token);
    assert.equal(tokens.size, 2);
  });

  it('a sandbox run that fails or throws still ends the bracket, after all its output', async () => {
    const failing = runAction({ prints: ['::error::before the failure'], exit: 7 });
    assert.equal(failing.code, 7);
    assert.ok(bracket(failing.stdout).inside.includes('::error::before the failure'));

    const throwing = runAction({ prints: ['::error::before the crash'], throws: 'boom' });
    assert.equal(throwing.code, 125);
    assert.ok(bracket(throwing.stdout).inside.includes('::error::before the crash'));
  });
});
