import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkoutBase, fetchCommit, GitError } from '../../src/action/git.js';
import { createOrigin, git, type FakeOrigin } from './action-origin-fixture.js';

const BASE_POLICY = 'network_sandbox: false\n';

let root: string;
let origin: FakeOrigin;
const originOf = (o: FakeOrigin) => ({ url: `${o.serverUrl}/${o.repository}`, token: null });

void before(() => {
  root = mkdtempSync(join(tmpdir(), 'airlock-action-git-'));
  origin = createOrigin(
    root,
    { 'README.md': 'base\n', '.airlock/sandbox.yaml': BASE_POLICY },
    { 'README.md': 'pr\n', '.airlock/sandbox.yaml': 'network_sandbox: false\nenv: {PWNED: "1"}\n' },
  );
});
void after(() => rmSync(root, { recursive: true, force: true }));

function workspace(name: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

void describe('the action checks out the base branch on the host', () => {
  void it('into an empty workspace: the base commit and its policy, no credentials in .git/config', async () => {
    const ws = workspace('empty');
    const { baseSha, droppedCredentials } = await checkoutBase(ws, originOf(origin), 'main');
    assert.equal(baseSha, origin.baseSha);
    assert.deepEqual(droppedCredentials, []);
    assert.equal(readFileSync(join(ws, '.airlock/sandbox.yaml'), 'utf8'), BASE_POLICY);
    assert.doesNotMatch(readFileSync(join(ws, '.git/config'), 'utf8'), /extraheader|token/i);
  });

  void it('a tag (release events): the tagged commit, detached, with its policy', async () => {
    git(origin.bareDir, 'tag', 'v1.0.0', origin.baseSha);
    const ws = workspace('tag');
    const { baseSha } = await checkoutBase(ws, originOf(origin), 'v1.0.0', 'tag');
    assert.equal(baseSha, origin.baseSha);
    assert.equal(readFileSync(join(ws, '.airlock/sandbox.yaml'), 'utf8'), BASE_POLICY);
    assert.equal(git(ws, 'rev-parse', '--abbrev-ref', 'HEAD'), 'HEAD', 'not detached');
    await assert.rejects(checkoutBase(workspace('no-tag'), originOf(origin), 'v9', 'tag'), GitError);
  });

  void it('over a workspace an earlier run left tainted: no hook or fsmonitor runs, no token or stray policy survives', async () => {
    const ws = workspace('tainted');
    const ran = join(root, 'host-code-ran');
    git(ws, 'init', '--quiet');
    git(ws, 'remote', 'add', 'origin', 'https://github.com/acme/widget');
    git(ws, 'fetch', '--quiet', originOf(origin).url, origin.prSha);
    git(ws, 'checkout', '--quiet', '--detach', origin.prSha);
    // What PR code in the sandbox could leave in a read-write .git (self-hosted runners keep the workspace) ...
    for (const hook of ['post-checkout', 'reference-transaction', 'pre-auto-gc']) {
      writeFileSync(join(ws, '.git/hooks', hook), `#!/bin/sh\necho ${hook} >> ${ran}\n`, { mode: 0o755 });
    }
    writeFileSync(join(ws, 'monitor.sh'), `#!/bin/sh\necho fsmonitor >> ${ran}\n`, { mode: 0o755 });
    git(ws, 'config', '--local', 'core.fsmonitor', join(ws, 'monitor.sh'));
    // ... and what actions/checkout with persist-credentials: true leaves behind.
    git(ws, 'config', '--local', 'http.https://github.com/.extraheader', 'AUTHORIZATION: basic c2VjcmV0');
    writeFileSync(join(ws, '.airlock/network-allowlist.yaml'), 'domains: ["*"]\n');
    rmSync(ran, { force: true });

    const { baseSha, droppedCredentials } = await checkoutBase(ws, originOf(origin), 'main');
    assert.equal(
      existsSync(ran),
      false,
      `code from the old workspace ran on the host: ${existsSync(ran) ? readFileSync(ran, 'utf8') : ''}`,
    );
    assert.equal(baseSha, origin.baseSha);
    assert.deepEqual(droppedCredentials, ['http.https://github.com/.extraheader']);
    assert.doesNotMatch(readFileSync(join(ws, '.git/config'), 'utf8'), /extraheader|c2VjcmV0|fsmonitor/);
    assert.equal(existsSync(join(ws, '.airlock/network-allowlist.yaml')), false, 'untracked allowlist survived');
    assert.equal(readFileSync(join(ws, '.airlock/sandbox.yaml'), 'utf8'), BASE_POLICY);
  });

  void it('sends the token as a header from the environment: never in argv, never in .git/config', async () => {
    const token = `ghs_${'x'.repeat(8)}${Date.now()}`;
    let authorization: string | undefined;
    let gitProcessesSeen = 0;
    const argvWithToken: string[] = [];
    const server = createServer((req, res) => {
      authorization = req.headers.authorization;
      // While git waits for this answer, every process's argv is readable, as `ps` would show it.
      for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
        let cmdline = '';
        try {
          cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
        } catch {
          continue;
        }
        if (/\bgit\b/.test(cmdline) && cmdline.includes('acme/widget')) gitProcessesSeen++;
        if (cmdline.includes(token) || cmdline.includes(Buffer.from(`x-access-token:${token}`).toString('base64'))) {
          argvWithToken.push(cmdline);
        }
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      const ws = workspace('http');
      await assert.rejects(checkoutBase(ws, { url: `http://127.0.0.1:${port}/acme/widget`, token }, 'main'), GitError);
      assert.equal(authorization, `basic ${Buffer.from(`x-access-token:${token}`).toString('base64')}`);
      assert.ok(gitProcessesSeen > 0, 'the argv scan saw no git process: it proves nothing');
      assert.deepEqual(argvWithToken, []);
      assert.doesNotMatch(readFileSync(join(ws, '.git/config'), 'utf8'), new RegExp(`extraheader|${token}`));
    } finally {
      server.close();
    }
  });
});

void describe('the action fetches the PR commit on the host', () => {
  void it('by SHA, so the sandbox has the objects without network access', async () => {
    const ws = workspace('fetch');
    await checkoutBase(ws, originOf(origin), 'main');
    await fetchCommit(ws, originOf(origin), origin.prSha);
    assert.equal(git(ws, 'cat-file', '-t', origin.prSha), 'commit');
  });

  void it('refuses anything but a full SHA, so a crafted pr-sha cannot become a git option', async () => {
    const ws = workspace('inject');
    await checkoutBase(ws, originOf(origin), 'main');
    const marker = join(root, 'pwned');
    for (const sha of [`--upload-pack=touch ${marker}`, 'main', origin.prSha.slice(0, 12), `${origin.prSha} `]) {
      await assert.rejects(fetchCommit(ws, originOf(origin), sha), GitError, sha);
    }
    assert.equal(existsSync(marker), false);
  });

  void it('fails clearly when the commit is not on the server', async () => {
    const ws = workspace('missing');
    await checkoutBase(ws, originOf(origin), 'main');
    await assert.rejects(fetchCommit(ws, originOf(origin), 'f'.repeat(40)), GitError);
  });
});
