import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { promisify } from 'node:util';
import type { LoadedPolicy } from '../../src/cli/config/types.js';
import { generateRunCa } from '../../src/cli/session/ca.js';
import { prepareCredentials } from '../../src/cli/secrets/prepare.js';
import { AllowlistSchema } from '../../src/protocol/allowlist.js';
import { SandboxConfigSchema } from '../../src/protocol/sandbox-config.js';
import { randomString } from '../../src/protocol/surrogate.js';
import { createCredentialProcessor } from '../../src/proxy/credentials/index.js';
import { formatTextLine, memoryLog } from '../../src/proxy/log/network-log.js';
import { startProxy, type RunningProxy } from '../../src/proxy/start.js';
import { makeTestPki, type TestPki } from '../helpers/tls-fixtures.js';
import { startAuthenticatingGitFront, startGitHttpsServer, unusedPort } from '../helpers/upstream.js';

/**
 * A real `git push` over HTTPS with the surrogate in the remote URL, through the in-process proxy, to a git server
 * that demands Basic credentials (as GitHub does) and accepts only the real token. git sends
 * `Basic base64(x-access-token:SURROGATE)` after the 401 challenge; the push lands only if the proxy swapped it.
 */

const exec = promisify(execFile);
const HOST = 'github.test';
const REAL = `ghp_${randomString(36, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789')}`;

let work: string;
let pki: TestPki;
let proxy: RunningProxy;
let backend: { port: number; close(): Promise<void> };
let front: { port: number; authorizations: string[]; close(): Promise<void> };
let surrogate: string;
/**
 * git has no --connect-to, so the URL names the port the proxy listens on. It is declared (an allowlist entry and
 * the secret's scope name it) as a port the proxy opens, just as `github.test:PORT` in a policy would be.
 */
let port: number;
const log = memoryLog();

function git(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  return exec('git', args, {
    cwd,
    env: {
      PATH: process.env.PATH,
      HOME: work,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_TERMINAL_PROMPT: '0',
      GIT_AUTHOR_NAME: 'sandbox',
      GIT_AUTHOR_EMAIL: 'sandbox@example.invalid',
      GIT_COMMITTER_NAME: 'sandbox',
      GIT_COMMITTER_EMAIL: 'sandbox@example.invalid',
      ...env,
    },
  });
}

/** git push as the sandbox runs it: to the proxy (standing in for the host's address), trusting the run CA. */
function pushThroughProxy(local: string, remote: string, refspec: string) {
  return git(local, [
    '-c',
    `http.sslCAInfo=${join(work, 'run-ca.pem')}`,
    '-c',
    `http.curloptResolve=${HOST}:${port}:127.0.0.1`,
    'push',
    '--quiet',
    remote,
    refspec,
  ]);
}

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'airlock-git-push-'));
  pki = await makeTestPki([HOST]);
  const runCa = await generateRunCa();
  await writeFile(join(work, 'run-ca.pem'), runCa.certPem);

  const root = join(work, 'remote');
  await exec('git', ['init', '--quiet', '--bare', '--initial-branch=main', join(root, 'o', 'r.git')]);
  await git(join(root, 'o', 'r.git'), ['config', 'http.receivepack', 'true']);
  backend = await startGitHttpsServer(pki, root);
  port = await unusedPort();

  const prepared = prepareCredentials(
    {
      configDir: null,
      layout: 'none',
      sandbox: SandboxConfigSchema.parse({
        masked_secrets: { GH_TOKEN: { value: REAL, scopes: [`${HOST}:${port}`], headers: ['Authorization'] } },
      }),
      envRefs: new Map(),
      allowlist: { domains: [], url_prefixes: [] },
      allowlistSha256: '0'.repeat(64),
      files: {},
      build: null,
      warnings: [],
    } satisfies LoadedPolicy,
    {},
  );
  surrogate = prepared.containerEnv.GH_TOKEN!;
  front = await startAuthenticatingGitFront({
    pki,
    backendPort: backend.port,
    servername: HOST,
    expected: `Basic ${Buffer.from(`x-access-token:${REAL}`).toString('base64')}`,
  });
  proxy = await startProxy({
    allowlist: AllowlistSchema.parse({ domains: [`${HOST}:${port}`] }),
    ca: runCa,
    sandboxAddress: '10.199.1.100',
    listen: { host: '127.0.0.1', http: 0, https: 0, dns: 0, ports: [{ port }] },
    upstream: {
      caPem: pki.caPem,
      hosts: { [HOST]: `127.0.0.1:${front.port}` },
      resolve: () => Promise.reject(new Error('tests resolve nothing')),
    },
    credentials: createCredentialProcessor(prepared.proxyCredentials),
    log,
  });
});

after(async () => {
  await proxy?.close();
  await front?.close();
  await backend?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

void it('git push with the surrogate in the remote URL lands, and the server only ever saw the real token', async () => {
  const local = join(work, 'local');
  await exec('git', ['init', '--quiet', '--initial-branch=main', local]);
  await writeFile(join(local, 'README'), 'pushed through the airlock\n');
  await git(local, ['add', 'README']);
  await git(local, ['commit', '--quiet', '-m', 'first']);
  const remote = `https://x-access-token:${surrogate}@${HOST}:${port}/o/r.git`;
  await pushThroughProxy(local, remote, 'main');

  const pushed = (await git(join(work, 'remote', 'o', 'r.git'), ['rev-parse', 'main'])).stdout.trim();
  const head = (await git(local, ['rev-parse', 'HEAD'])).stdout.trim();
  assert.equal(pushed, head);

  const expected = `Basic ${Buffer.from(`x-access-token:${REAL}`).toString('base64')}`;
  assert.ok(front.authorizations.length >= 2, 'git authenticated both the ref advertisement and the pack upload');
  for (const auth of front.authorizations) assert.equal(auth, expected);
  const lines = log.events.map(formatTextLine);
  assert.ok(
    lines.some((l) => l.startsWith(`ALLOWED POST https://${HOST}`) && l.endsWith('[masked: 1]')),
    lines.join('\n'),
  );
  assert.ok(!lines.some((l) => l.includes(REAL)));
});

void it('the same push with a token of its own is stripped and refused by the server', async () => {
  const local = join(work, 'local');
  const own = `ghp_${randomString(36, 'abcdefghijklmnopqrstuvwxyz0123456789')}`;
  const before = front.authorizations.length;
  await assert.rejects(pushThroughProxy(local, `https://x-access-token:${own}@${HOST}:${port}/o/r.git`, 'main:other'));
  // The credential never reached the server: every retry arrived without Authorization and got the 401 again.
  assert.equal(front.authorizations.length, before);
  assert.ok(log.events.map(formatTextLine).some((l) => l.startsWith("STRIPPED header 'authorization'")));
});
