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
    for (const name of ['pull_request', 'pull_request_target', 'pull_request_review']) {
      assert.deepEqual(resolveTarget(name, pr, {}, ''), {
        baseRef: 'main',
        baseKind: 'branch',
        prSha: sha,
        warnings: [],
      });
    }
    assert.equal(resolveTarget('pull_request', pr, {}, 'B'.repeat(40)).prSha, 'b'.repeat(40));
  });

  void it('push: the pushed branch and commit; workflow_dispatch: the dispatched branch, with a warning', () => {
    const push = resolveTarget('push', { after: sha }, { GITHUB_REF: 'refs/heads/release/1.x' }, '');
    assert.deepEqual(push, { baseRef: 'release/1.x', baseKind: 'branch', prSha: sha, warnings: [] });
    const dispatch = resolveTarget(
      'workflow_dispatch',
      {},
      { GITHUB_REF: 'refs/heads/dev', GITHUB_REF_NAME: 'dev', GITHUB_SHA: sha },
      '',
    );
    assert.equal(dispatch.baseRef, 'dev');
    assert.match(dispatch.warnings[0]!, /dispatched branch 'dev'/);
  });

  void it("merge_group: the queue's target branch, never the gh-readonly-queue branch holding the queued PRs", () => {
    const queue = 'refs/heads/gh-readonly-queue/main/pr-7-' + 'c'.repeat(40);
    const target = resolveTarget(
      'merge_group',
      { merge_group: { base_ref: 'refs/heads/main', head_sha: sha } },
      { GITHUB_REF: queue, GITHUB_SHA: 'd'.repeat(40) },
      '',
    );
    assert.deepEqual(target, { baseRef: 'main', baseKind: 'branch', prSha: sha, warnings: [] });
  });

  void it('every other event falls back to the branch or tag it runs on, as sandbox-action does (ref_name)', () => {
    const repository = { default_branch: 'main' };
    const onMain = { GITHUB_REF: 'refs/heads/main', GITHUB_SHA: sha };
    for (const name of ['schedule', 'workflow_call', 'workflow_run', 'issue_comment', 'repository_dispatch']) {
      assert.deepEqual(resolveTarget(name, { repository }, onMain, ''), {
        baseRef: 'main',
        baseKind: 'branch',
        prSha: sha,
        warnings: [],
      });
    }
    // workflow_run on a PR's workflow: the commit to test comes from the input, the policy from the default branch.
    const run = resolveTarget('workflow_run', { repository }, onMain, 'E'.repeat(40));
    assert.equal(run.prSha, 'e'.repeat(40));
    // Off the default branch the policy is that branch's: said, not refused.
    const other = resolveTarget('schedule', { repository }, { GITHUB_REF: 'refs/heads/dev', GITHUB_SHA: sha }, '');
    assert.equal(other.baseRef, 'dev');
    assert.match(other.warnings[0]!, /comes from the branch 'dev', not the default branch 'main'/);
    // A release (or tag push) runs on a tag: checked out as a tag.
    const release = resolveTarget('release', { repository }, { GITHUB_REF: 'refs/tags/v1.2.0', GITHUB_SHA: sha }, '');
    assert.deepEqual([release.baseRef, release.baseKind], ['v1.2.0', 'tag']);
    assert.match(release.warnings[0]!, /tag 'v1.2.0'/);
    const tagPush = resolveTarget('push', { after: sha }, { GITHUB_REF: 'refs/tags/v1' }, '');
    assert.deepEqual([tagPush.baseRef, tagPush.baseKind, tagPush.warnings], ['v1', 'tag', []]);
  });

  void it('refuses runs on neither branch nor tag, short or non-hex SHAs, and names git would read as options', () => {
    assert.throws(() => resolveTarget('issue_comment', {}, { GITHUB_REF: 'refs/pull/1/merge' }, sha), TargetError);
    assert.throws(() => resolveTarget('schedule', {}, {}, sha), TargetError);
    assert.throws(() => resolveTarget('pull_request', {}, { GITHUB_REF: 'refs/heads/main' }, sha), TargetError);
    assert.throws(
      () => resolveTarget('merge_group', {}, { GITHUB_REF: 'refs/heads/x', GITHUB_SHA: sha }, ''),
      TargetError,
    );
    for (const bad of ['abc123', `${sha.slice(1)}g`, '--upload-pack=x']) {
      assert.throws(() => resolveTarget('pull_request', pr, {}, bad), TargetError, bad);
    }
    for (const ref of ['-x', 'a..b', 'a b', 'refs/pull/1/merge']) {
      const event = { pull_request: { head: { sha }, base: { ref } } };
      assert.throws(() => resolveTarget('pull_request', event, {}, ''), TargetError, ref);
    }
    assert.throws(() => resolveTarget('release', {}, { GITHUB_REF: 'refs/tags/--upload-pack=x', GITHUB_SHA: sha }, ''));
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
      ignored: [],
      audit: false,
    });
    assert.equal(from({ command: 'x', merge: 'false', cache: 'False' }).merge, false);
    assert.equal(from({ command: 'x', audit: 'true' }).audit, true);
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
      { command: 'x', audit: 'yes' },
    ];
    for (const bad of refusals) {
      assert.throws(() => from(bad), InputError, JSON.stringify(bad));
    }
  });

  void it("inputs: sandbox-action's names are aliases; airut_version is accepted and reported as ignored", () => {
    const from = (values: Record<string, string>) => readInputs((name) => values[name] ?? '');
    const airut = from({
      command: 'make',
      pr_sha: 'A'.repeat(40),
      sandbox_args: '--verbose',
      cache_version: '2',
      cache_max_age: '24',
      airut_version: '0.15.0',
    });
    assert.equal(airut.prSha, 'A'.repeat(40));
    assert.deepEqual(airut.sandboxArgs, ['--verbose']);
    assert.equal(airut.cacheVersion, '2');
    assert.equal(airut.cacheMaxAge, 24);
    assert.equal(airut.ignored.length, 1);
    assert.match(airut.ignored[0]!, /'airut_version' is ignored/);
    // The same value under both names is fine; different values are a mistake to stop at.
    assert.equal(from({ command: 'x', 'pr-sha': 'a'.repeat(40), pr_sha: 'a'.repeat(40) }).prSha, 'a'.repeat(40));
    assert.throws(() => from({ command: 'x', 'cache-max-age': '1', cache_max_age: '2' }), /disagree/);
    assert.throws(() => from({ command: 'x', sandbox_args: '-- sh' }), InputError);
    assert.throws(() => from({ command: 'x', cache_max_age: '1h' }), InputError);
  });
});
