import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureTestImage, TEST_IMAGE } from '../helpers/images.js';
import {
  advanceBase,
  createOrigin,
  git,
  type FakeOrigin,
  type FileTree,
} from '../integration/action-origin-fixture.js';
import * as runner from './action-runner.js';
import { HOST_VALUE, INPUT_TOKEN, RUNNER_SECRETS } from './action-runner.js';

/**
 * The acceptance harness for the GitHub Action: the bundled action, run with plain Node as the runner does, against
 * a simulated runner (action-runner.ts) and a local bare origin with a base branch and a PR commit, on real Podman.
 * The base policy turns the network sandbox off, so these cases prove the host-side steps and the sandboxed
 * merge + command; action-network-summary.test.ts covers the proxy's log in the summary.
 */

const basePolicy = (extra = '') =>
  `network_sandbox: false\nimage: ${TEST_IMAGE}\nenv:\n  POLICY_SOURCE: base\n  FROM_HOST: !env HARNESS_HOST_VALUE\n${extra}`;

let root: string;
let bundle: string;
const runAction = (origin: FakeOrigin, inputs: Record<string, string>, prepare?: (ws: string) => void) =>
  runner.runAction(bundle, root, origin, inputs, prepare);
const originWith = (name: string, base: FileTree, pr: FileTree) => runner.originWith(root, name, base, pr);

void before(async () => {
  await ensureTestImage('podman');
  root = mkdtempSync(join(tmpdir(), 'airlock-action-harness-'));
  bundle = runner.buildBundle(root);
});
void after(() => rmSync(root, { recursive: true, force: true }));

void describe('the bundled action on a simulated runner with real Podman', { timeout: 600_000 }, () => {
  void it('passing PR: base checked out, PR merged and tested in the sandbox, summary and outputs written, exit 0', async () => {
    const dir = join(root, 'pass');
    mkdirSync(dir, { recursive: true });
    const origin = createOrigin(
      dir,
      { '.airlock/sandbox.yaml': basePolicy(), 'lib.txt': 'base\n' },
      { 'test.sh': '#!/bin/sh\necho "tests see: $(cat lib.txt) $(cat feature.txt)"\n', 'feature.txt': 'feature\n' },
    );
    // The base moves on after the PR was cut, so the sandbox makes a real merge (what GitHub's merge ref tests).
    advanceBase(dir, origin, { 'lib.txt': 'base v2\n' });
    const r = await runAction(origin, { command: 'sh test.sh && git log --format=%s -n1' });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.sandboxOutput, /tests see: base v2 feature/);
    assert.match(r.sandboxOutput, new RegExp(`^Merge commit '${origin.prSha}'`, 'm'));
    assert.match(r.summary, /sandboxed run passed/);
    assert.match(r.summary, new RegExp(`<code>main</code> at <code>${origin.baseSha}</code>`));
    assert.match(r.summary, new RegExp(`<code>${origin.prSha}</code>`));
    assert.equal(r.outputs['exit-code'], '0');
    assert.equal(r.outputs['base-sha'], origin.baseSha);
    assert.match(r.outputs['allowlist-sha256'] ?? '', /^[0-9a-f]{64}$/);
    // The !env value was registered for masking before the sandbox ran.
    const mask = r.stdout.indexOf(`::add-mask::${HOST_VALUE}`);
    assert.ok(mask >= 0 && mask < r.stdout.indexOf('::stop-commands::'), 'host value not masked before the run');
  });

  void it("a schedule run with sandbox-action's inputs (pr_sha, sandbox_args, airut_version) works unchanged", async () => {
    const origin = originWith(
      'airut-inputs',
      { '.airlock/sandbox.yaml': basePolicy(), 'lib.txt': 'base\n' },
      { 'feature.txt': 'feature\n' },
    );
    const logFile = join(root, 'airut-inputs', 'airlock.log');
    const r = await runner.runAction(
      bundle,
      root,
      origin,
      {
        command: 'cat lib.txt feature.txt',
        pr_sha: origin.prSha,
        sandbox_args: `--verbose --log ${logFile}`,
        airut_version: '0.15.0',
      },
      undefined,
      { GITHUB_EVENT_NAME: 'schedule', GITHUB_REF: 'refs/heads/main', GITHUB_SHA: origin.baseSha },
      { schedule: '17 3 * * *', repository: { default_branch: 'main' } },
    );
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.sandboxOutput, /^base\nfeature$/m);
    assert.match(r.stdout, /::notice::input 'airut_version' is ignored/);
    // sandbox_args reached airlock run: its messages went to the --log file instead of stderr.
    assert.match(readFileSync(logFile, 'utf8'), /\[WARN\] airlock: network_sandbox is false/);
    assert.doesNotMatch(r.stderr, /network_sandbox is false/);
    assert.equal(r.outputs['base-sha'], origin.baseSha);
  });

  void it("failing PR: the step's exit code is the command's", async () => {
    const origin = originWith(
      'fail',
      { '.airlock/sandbox.yaml': basePolicy() },
      { 'test.sh': '#!/bin/sh\necho failing\nexit 3\n' },
    );
    const r = await runAction(origin, { command: 'sh test.sh' });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.sandboxOutput, /failing/);
    assert.match(r.summary, /failed \(exit 3\)/);
    assert.equal(r.outputs['exit-code'], '3');
    assert.match(r.stdout, /::error::the command exited with 3/);
  });

  void it("PR that rewrites .airlock/: the base branch's policy is the one enforced", async () => {
    const origin = originWith(
      'policy',
      { '.airlock/sandbox.yaml': basePolicy() },
      {
        '.airlock/sandbox.yaml': `network_sandbox: false\nimage: ${TEST_IMAGE}\nenv:\n  POLICY_SOURCE: pr\npass_env: [ACTIONS_RUNTIME_TOKEN, GITHUB_TOKEN, INPUT_TOKEN]\n`,
      },
    );
    const r = await runAction(origin, {
      command: 'echo "policy=$POLICY_SOURCE"; grep -c "POLICY_SOURCE: pr" .airlock/sandbox.yaml; env',
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.sandboxOutput, /policy=base/);
    assert.match(r.sandboxOutput, /^1$/m, 'the PR version of the file should be in the merged tree');
    for (const secret of [...Object.values(RUNNER_SECRETS).filter(Boolean), INPUT_TOKEN]) {
      assert.ok(!r.sandboxOutput.includes(secret), `a runner secret reached the sandbox through the PR's policy`);
    }
  });

  void it('PR whose tests hunt for credentials in .git/config and the environment finds none', async () => {
    const origin = originWith(
      'creds',
      { '.airlock/sandbox.yaml': basePolicy() },
      {
        'steal.sh':
          '#!/bin/sh\necho "--- git config"; cat .git/config; git config --list --show-origin; echo "--- env"; env; cat /proc/1/environ | tr "\\0" "\\n"\n',
      },
    );
    const r = await runAction(origin, { command: 'sh steal.sh' }, (ws) => {
      // What an earlier actions/checkout with persist-credentials: true leaves in the workspace.
      git(ws, 'init', '--quiet');
      git(
        ws,
        'config',
        '--local',
        'http.https://github.com/.extraheader',
        `AUTHORIZATION: basic ${Buffer.from(`x-access-token:${INPUT_TOKEN}`).toString('base64')}`,
      );
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.sandboxOutput, /--- git config/);
    assert.match(r.sandboxOutput, /--- env/);
    assert.doesNotMatch(r.sandboxOutput, /extraheader|AUTHORIZATION/i);
    const leaks = [
      ...Object.values(RUNNER_SECRETS).filter(Boolean),
      INPUT_TOKEN,
      Buffer.from(`x-access-token:${INPUT_TOKEN}`).toString('base64'),
    ];
    for (const secret of leaks) assert.ok(!r.sandboxOutput.includes(secret), `leaked ${secret.slice(0, 12)}…`);
    assert.doesNotMatch(r.sandboxOutput, /^(GITHUB_|ACTIONS_|INPUT_|RUNNER_)/m);
    assert.match(r.stdout, /::warning::discarded a \.git\/config holding http\.https:\/\/github\.com\/\.extraheader/);
  });

  void it('merge conflict: a clear failure, and the command never runs', async () => {
    const dir = join(root, 'conflict');
    mkdirSync(dir, { recursive: true });
    const origin = createOrigin(dir, { '.airlock/sandbox.yaml': basePolicy(), 'a.txt': 'one\n' }, { 'a.txt': 'pr\n' });
    advanceBase(dir, origin, { 'a.txt': 'base\n' });
    const r = await runAction(origin, { command: 'echo COMMAND-RAN' });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout + r.stderr, /CONFLICT/);
    assert.match(r.stderr, new RegExp(`airlock: could not merge ${origin.prSha} into the base branch`));
    assert.doesNotMatch(r.sandboxOutput, /COMMAND-RAN/);
    assert.match(r.summary, /failed \(exit 1\)/);
  });

  void it('sandboxed output cannot issue runner commands: they are stopped with a token it never sees', async () => {
    const origin = originWith('commands', { '.airlock/sandbox.yaml': basePolicy() }, { 'x.txt': 'x\n' });
    const r = await runAction(origin, {
      command: 'echo "::add-mask::base"; echo "::set-output name=exit-code::0"; exit 5',
    });
    assert.equal(r.code, 5);
    const stop = /^::stop-commands::([0-9a-f]{32})$/m.exec(r.stdout);
    assert.ok(stop, 'no stop-commands line');
    const resume = r.stdout.indexOf(`::${stop[1]}::`);
    assert.ok(resume > r.stdout.indexOf('::add-mask::base'), 'commands resumed before the sandbox output');
    assert.equal(r.outputs['exit-code'], '5');
  });
});
