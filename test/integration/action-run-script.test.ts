import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readInputs, InputError } from '../../src/action/inputs.js';
import { sandboxRunArgv } from '../../src/action/sandbox-command.js';
import { resolveTarget, TargetError } from '../../src/action/target.js';
import { advanceBase, createOrigin, git, type FakeOrigin } from './action-origin-fixture.js';

/**
 * The command line the action hands to `airlock run`, executed here by real bash in a real clone (the part that
 * runs inside the container): the PR SHA and the workflow's command are data, the merge happens first, and a
 * conflict stops before the command.
 */

let root: string;
let origin: FakeOrigin;

void before(() => {
  root = mkdtempSync(join(tmpdir(), 'airlock-action-script-'));
  origin = createOrigin(root, { 'a.txt': 'one\n', 'b.txt': 'base\n' }, { 'a.txt': 'one\ntwo\n' });
  advanceBase(root, origin, { 'b.txt': 'base moved\n' });
});
void after(() => rmSync(root, { recursive: true, force: true }));

/** A base checkout with the PR's objects, as the action leaves it before the sandbox starts. */
function preparedWorkspace(name: string): string {
  const ws = join(root, name);
  mkdirSync(ws);
  git(ws, 'init', '--quiet');
  git(ws, 'fetch', '--quiet', `${origin.serverUrl}/${origin.repository}`, 'main', origin.prSha);
  git(ws, 'checkout', '--quiet', '--detach', origin.baseSha);
  return ws;
}

/** Runs what follows `--` in the argv, as the container would, with no git identity configured. */
function runInside(ws: string, argv: string[]) {
  const command = argv.slice(argv.indexOf('--') + 1);
  const home = join(root, `home-${Math.random().toString(36).slice(2)}`);
  mkdirSync(home);
  return spawnSync(command[0]!, command.slice(1), {
    cwd: ws,
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: home, GIT_CONFIG_NOSYSTEM: '1' },
  });
}

void describe('the sandboxed command line', () => {
  void it('passes options before --, then bash, a fixed script and the SHA and command as separate arguments', () => {
    const argv = sandboxRunArgv({
      sandboxArgs: ['--verbose'],
      actionArgs: ['--max-image-age', '168'],
      mode: 'merge',
      prSha: origin.prSha,
      command: 'npm test',
    });
    assert.deepEqual(argv.slice(0, 4), ['--verbose', '--max-image-age', '168', '--']);
    assert.deepEqual(argv.slice(4, 5), ['bash']);
    assert.deepEqual(argv.slice(-3), ['airlock-pr', origin.prSha, 'npm test']);
  });

  void it('merges the PR into the base (a real merge commit, no identity needed), then runs the command', () => {
    const ws = preparedWorkspace('merge');
    const argv = sandboxRunArgv({
      sandboxArgs: [],
      actionArgs: [],
      mode: 'merge',
      prSha: origin.prSha,
      command: 'cat a.txt b.txt > seen.txt\necho "multi-line ok" >> seen.txt',
    });
    const r = runInside(ws, argv);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(ws, 'seen.txt'), 'utf8'), 'one\ntwo\nbase moved\nmulti-line ok\n');
    assert.equal(git(ws, 'rev-list', '--parents', '-n1', 'HEAD').split(' ').length, 3, 'not a merge commit');
  });

  void it("the command's exit code is the run's", () => {
    const ws = preparedWorkspace('fail');
    const argv = sandboxRunArgv({
      sandboxArgs: [],
      actionArgs: [],
      mode: 'checkout',
      prSha: origin.prSha,
      command: 'exit 7',
    });
    assert.equal(runInside(ws, argv).status, 7);
  });

  void it('checkout mode tests the PR commit itself', () => {
    const ws = preparedWorkspace('checkout');
    const argv = sandboxRunArgv({
      sandboxArgs: [],
      actionArgs: [],
      mode: 'checkout',
      prSha: origin.prSha,
      command: 'git rev-parse HEAD',
    });
    const r = runInside(ws, argv);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), origin.prSha);
  });

  void it('shell text in the command is the command, never part of the script around it', () => {
    const ws = preparedWorkspace('quoting');
    const command = `printf '%s\\n' "$1" "$0" > args.txt; echo '"; touch injected; "' > /dev/null`;
    const argv = sandboxRunArgv({ sandboxArgs: [], actionArgs: [], mode: 'merge', prSha: origin.prSha, command });
    const r = runInside(ws, argv);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(readFileSync(join(ws, 'args.txt'), 'utf8'), `${origin.prSha}\nairlock-pr\n`);
    assert.equal(existsSync(join(ws, 'injected')), false);
  });

  void it('a merge conflict fails clearly and the command does not run', () => {
    const conflictRoot = join(root, 'conflict');
    mkdirSync(conflictRoot);
    const o = createOrigin(conflictRoot, { 'a.txt': 'one\n' }, { 'a.txt': 'pr version\n' }, 'acme/conflict');
    advanceBase(conflictRoot, o, { 'a.txt': 'base version\n' });
    const ws = join(conflictRoot, 'ws');
    mkdirSync(ws);
    git(ws, 'init', '--quiet');
    git(ws, 'fetch', '--quiet', `${o.serverUrl}/${o.repository}`, 'main', o.prSha);
    git(ws, 'checkout', '--quiet', '--detach', o.baseSha);
    const argv = sandboxRunArgv({
      sandboxArgs: [],
      actionArgs: [],
      mode: 'merge',
      prSha: o.prSha,
      command: 'touch ran',
    });
    const r = runInside(ws, argv);
    assert.equal(r.status, 1);
    assert.match(r.stdout + r.stderr, /CONFLICT/);
    assert.match(r.stderr, new RegExp(`airlock: could not merge ${o.prSha} into the base branch`));
    assert.equal(existsSync(join(ws, 'ran')), false);
  });
});

void describe('what the action runs against', () => {
  const sha = 'a'.repeat(40);
  const pr = { pull_request: { head: { sha }, base: { ref: 'main' } } };

  void it('pull_request and pull_request_target: the base branch and the head SHA', () => {
    for (const name of ['pull_request', 'pull_request_target']) {
      assert.deepEqual(resolveTarget(name, pr, {}, ''), { baseRef: 'main', prSha: sha, warnings: [] });
    }
    assert.equal(resolveTarget('pull_request', pr, {}, 'B'.repeat(40)).prSha, 'b'.repeat(40));
  });

  void it('push: the pushed branch and commit; workflow_dispatch: the dispatched branch, with a warning', () => {
    const push = resolveTarget('push', { after: sha }, { GITHUB_REF: 'refs/heads/release/1.x' }, '');
    assert.deepEqual(push, { baseRef: 'release/1.x', prSha: sha, warnings: [] });
    const dispatch = resolveTarget(
      'workflow_dispatch',
      {},
      { GITHUB_REF: 'refs/heads/dev', GITHUB_REF_NAME: 'dev', GITHUB_SHA: sha },
      '',
    );
    assert.equal(dispatch.baseRef, 'dev');
    assert.match(dispatch.warnings[0]!, /dispatched branch 'dev'/);
  });

  void it('refuses other events, tag pushes, short or non-hex SHAs, and branch names git would read as options', () => {
    assert.throws(() => resolveTarget('issue_comment', pr, {}, ''), TargetError);
    assert.throws(() => resolveTarget('push', { after: sha }, { GITHUB_REF: 'refs/tags/v1' }, ''), TargetError);
    for (const bad of ['abc123', `${sha.slice(1)}g`, '--upload-pack=x']) {
      assert.throws(() => resolveTarget('pull_request', pr, {}, bad), TargetError, bad);
    }
    for (const ref of ['-x', 'a..b', 'a b', 'refs/pull/1/merge']) {
      const event = { pull_request: { head: { sha }, base: { ref } } };
      assert.throws(() => resolveTarget('pull_request', event, {}, ''), TargetError, ref);
    }
  });

  void it('inputs: defaults, booleans, and refusals', () => {
    const from = (values: Record<string, string>) => readInputs((name) => values[name] ?? '');
    assert.deepEqual(from({ command: 'make' }), {
      command: 'make',
      prSha: '',
      merge: true,
      sandboxArgs: [],
      cache: true,
      cacheVersion: '',
      cacheMaxAge: 168,
      engine: null,
      token: '',
    });
    assert.equal(from({ command: 'x', merge: 'false', cache: 'False' }).merge, false);
    assert.deepEqual(from({ command: 'x', 'sandbox-args': ' --verbose  --timeout 60 ' }).sandboxArgs, [
      '--verbose',
      '--timeout',
      '60',
    ]);
    const refusals: Array<Record<string, string>> = [
      {},
      { command: 'x', merge: 'yes' },
      { command: 'x', 'sandbox-args': '-- sh' },
      { command: 'x', engine: 'lxc' },
      { command: 'x', 'cache-max-age': '1h' },
    ];
    for (const bad of refusals) {
      assert.throws(() => from(bad), InputError, JSON.stringify(bad));
    }
  });
});
