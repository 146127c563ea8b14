/**
 * Masked secrets in the real sandbox, on Podman (and Docker when AIRLOCK_TEST_DOCKER=1): the container only ever
 * holds a surrogate; the proxy swaps it for the real value on the wire to hosts in scope, leaves it alone elsewhere,
 * strips foreign credentials on scoped hosts and lets no second value ride beside the swapped one. Then the canary:
 * everything the sandbox can see, everything an out-of-scope upstream received, what the engine shows about the run
 * and airlock's own output are searched for the real value.
 *
 * Real clients only: curl, git (smart HTTP push to a git http-backend that demands Basic auth with the real token),
 * and python3 on a raw TLS socket for header shapes curl will not write.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { randomString } from '../../src/protocol/surrogate.js';
import {
  allOutput,
  allOutputFlags,
  canaryDumpScript,
  clearCanaryDump,
  ENGINES,
  findLeaks,
  headerValues,
  hostCommandLines,
  inspectRunResources,
  makeWorkspace,
  networkLogText,
  readCanaryDump,
  runInSandbox,
  startRecordingUpstream,
  type RecordingUpstream,
  type UpstreamHandler,
  type SandboxRun,
} from '../helpers/sandbox-fixture.js';
import { makeTestPki, type TestPki } from '../helpers/tls-fixtures.js';
import { startAuthenticatingGitFront, startGitHttpsServer, type GitFront } from '../helpers/upstream.js';

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const REAL = `ghp_${randomString(36, ALNUM)}`;
// A token of the sandbox's own, which must never reach the scoped host.
const ATTACKER = `ghp_${randomString(36, ALNUM)}`;
const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
const REAL_BEARER = `Bearer ${REAL}`;
const REAL_BASIC = basic('x-access-token', REAL);

const API = 'api.github.test';
const GIT = 'github.test';
const OTHER = 'other.test';
// In scope, but reached over plain HTTP: the real value must not cross the network in cleartext.
const PLAIN = 'plain.github.test';

/** What the scoped upstream says about the Authorization values it got; never the values themselves. */
function describeAuthorization(values: string[]): string {
  const kinds = values.map((v) => {
    if (v === REAL_BEARER) return 'real-bearer';
    if (v === REAL_BASIC) return 'real-basic';
    if (
      v.includes(ATTACKER) ||
      Buffer.from(v.replace(/^Basic /, ''), 'base64')
        .toString()
        .includes(ATTACKER)
    ) {
      return 'attacker';
    }
    return 'other';
  });
  return `n${values.length}:${kinds.join('+') || 'none'}`;
}

/** The scoped upstreams answer with describeAuthorization, so the sandbox learns what arrived but not the value. */
const answerAuthorization: UpstreamHandler = (req, res) => {
  const body = `${describeAuthorization(headerValues(req.rawHeaders, 'authorization'))}\n`;
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
};

/** Header shapes curl will not write (case variants, obs-fold, lists), sent as raw bytes over TLS to the proxy. */
const RAW_HEADER_PROBE = String.raw`
import os, socket, ssl, sys
tok, att = os.environ['GH_TOKEN'], sys.argv[1]
ctx = ssl.create_default_context(cafile='/etc/airlock/ca.pem')
def send(name, headers, method='GET', body=''):
    s = ctx.wrap_socket(socket.create_connection(('api.github.test', 443)), server_hostname='api.github.test')
    head = method + ' /raw/' + name + ' HTTP/1.1\r\nHost: api.github.test\r\n' + ''.join(h + '\r\n' for h in headers)
    s.sendall((head + 'Connection: close\r\n\r\n' + body).encode())
    data = b''
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    status = data.split(b' ', 2)[1].decode()
    body = data.split(b'\r\n\r\n', 1)[1].decode().strip().replace('\n', ' ')
    print('raw_' + name + '=' + status + ' ' + body[:80])
send('case_attacker_first', ['authorization: Bearer ' + att, 'Authorization: Bearer ' + tok])
send('case_surrogate_first', ['Authorization: Bearer ' + tok, 'AUTHORIZATION: Bearer ' + att])
send('obs_fold', ['Authorization: Bearer ' + tok, ' Bearer ' + att])
send('list', ['Authorization: Bearer ' + att + ', Bearer ' + tok])
send('basic_user_surrogate', ['Authorization: Basic ' + __import__('base64').b64encode((tok + ':' + att).encode()).decode()])
send('surrogate_twice', ['Authorization: Bearer ' + tok + ' ' + tok])
# A credential in a chunked trailer is a header the masked pass never looked at.
send('trailer', ['Authorization: Bearer ' + tok, 'Transfer-Encoding: chunked', 'Trailer: Authorization'], 'POST',
     '2\r\nhi\r\n0\r\nAuthorization: Bearer ' + att + '\r\n\r\n')
send('other_headers', ['X-Api-Key: ' + tok, 'Cookie: session=' + tok])
`;

let pki: TestPki;
let api: RecordingUpstream;
let other: RecordingUpstream;
let plain: RecordingUpstream;
let gitBackend: { port: number; close(): Promise<void> };
let gitFront: GitFront;
let repos: string;
let workspace: string;
const work: string[] = [];

before(async () => {
  pki = await makeTestPki([API, GIT, OTHER]);
  api = await startRecordingUpstream(pki, answerAuthorization);
  other = await startRecordingUpstream(pki, (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 3 });
    res.end('ok\n');
  });
  plain = await startRecordingUpstream(null, answerAuthorization);
  repos = await mkdtemp(path.join(tmpdir(), 'airlock-cred-git-'));
  work.push(repos);
  const bare = path.join(repos, 'o/r.git');
  execFileSync('git', ['init', '-q', '--bare', '--initial-branch=main', bare]);
  execFileSync('git', ['--git-dir', bare, 'config', 'http.receivepack', 'true']);
  gitBackend = await startGitHttpsServer(pki, repos);
  gitFront = await startAuthenticatingGitFront({
    pki,
    backendPort: gitBackend.port,
    servername: GIT,
    expected: REAL_BASIC,
    host: '0.0.0.0',
  });

  workspace = await makeWorkspace({
    '.airlock/upstream-ca.pem': pki.caPem,
    '.airlock/sandbox.yaml': [
      'upstream_ca_file: upstream-ca.pem',
      'upstream_hosts:',
      `  ${API}: host-gateway:${api.port}`,
      `  ${GIT}: host-gateway:${gitFront.port}`,
      `  ${OTHER}: host-gateway:${other.port}`,
      `  ${PLAIN}: host-gateway:${plain.port}`,
      'masked_secrets:',
      '  GH_TOKEN:',
      '    value: !env TEST_GH_TOKEN',
      `    scopes: [${API}, ${GIT}, ${PLAIN}]`,
      '    headers: [Authorization]',
      '',
    ].join('\n'),
    '.airlock/network-allowlist.yaml': `domains: [${API}, ${GIT}, ${OTHER}, ${PLAIN}]\n`,
    'raw_headers.py': RAW_HEADER_PROBE,
  });
  work.push(workspace);
});

after(async () => {
  await api?.close();
  await other?.close();
  await plain?.close();
  await gitFront?.close();
  await gitBackend?.close();
  for (const dir of work) await rm(dir, { recursive: true, force: true });
});

/**
 * Every probe of issue 6 in one sandbox run, then the canary dump, then a pause while the host inspects the run.
 * Each run pushes an unrelated history, so `branch` keeps the engines' runs on refs of their own.
 */
function probes(branch: string): string {
  return [
    'echo surrogate=$GH_TOKEN',
    `echo bearer=$(curl -sS -H "Authorization: Bearer $GH_TOKEN" https://${API}/bearer)`,
    `echo basic=$(curl -sS -u "x-access-token:$GH_TOKEN" https://${API}/basic)`,
    `echo token_scheme=$(curl -sS -H "Authorization: token $GH_TOKEN" https://${API}/token-scheme)`,
    `echo foreign=$(curl -sS -H "Authorization: Bearer ${ATTACKER}" https://${API}/foreign)`,
    `echo dup_attacker_first=$(curl -sS -H "Authorization: Bearer ${ATTACKER}" -H "Authorization: Bearer $GH_TOKEN" https://${API}/dup-attacker-first)`,
    `echo dup_surrogate_first=$(curl -sS -H "Authorization: Bearer $GH_TOKEN" -H "Authorization: Bearer ${ATTACKER}" https://${API}/dup-surrogate-first)`,
    `echo body_query=$(curl -sS "https://${API}/body?t=$GH_TOKEN" --data-binary "token=$GH_TOKEN")`,
    `python3 /workspace/raw_headers.py ${ATTACKER}`,
    `echo cleartext=$(curl -sS -H "Authorization: Bearer $GH_TOKEN" http://${PLAIN}/cleartext)`,
    `echo cleartext_foreign=$(curl -sS -H "Authorization: Bearer ${ATTACKER}" http://${PLAIN}/cleartext-foreign)`,
    `echo oos_bearer=$(curl -sS -H "Authorization: Bearer $GH_TOKEN" https://${OTHER}/oos-bearer)`,
    `echo oos_basic=$(curl -sS -u "x-access-token:$GH_TOKEN" "https://${OTHER}/oos-basic?t=$GH_TOKEN" --data-binary "$GH_TOKEN")`,
    // git: the surrogate from a credential helper (after the 401 challenge), then as a preset Basic header the way
    // actions/checkout configures it.
    'export HOME=/tmp/home GIT_TERMINAL_PROMPT=0 GIT_AUTHOR_NAME=s GIT_AUTHOR_EMAIL=s@s GIT_COMMITTER_NAME=s GIT_COMMITTER_EMAIL=s@s',
    'mkdir -p $HOME && printf "#!/bin/sh\\necho username=x-access-token\\necho password=\\$GH_TOKEN\\n" > $HOME/cred.sh && chmod +x $HOME/cred.sh',
    'cd /tmp && git init -q -b main app && cd app && echo pushed > README && git add README && git commit -qm first',
    'echo head=$(git rev-parse HEAD)',
    `git -c credential.helper=$HOME/cred.sh push -q https://${GIT}/o/r.git main:refs/heads/${branch} && echo push_helper=ok || echo push_helper=failed`,
    `git -c http.extraHeader="Authorization: Basic $(printf x-access-token:%s "$GH_TOKEN" | base64 -w0)" push -q https://${GIT}/o/r.git HEAD:refs/heads/${branch}-extra && echo push_header=ok || echo push_header=failed`,
    `git push -q https://x-access-token:${ATTACKER}@${GIT}/o/r.git HEAD:refs/heads/${branch}-attacker 2>/dev/null && echo push_attacker=ok || echo push_attacker=refused`,
    // Positive control for the canary search: the surrogate base64-encoded at each alignment, in a file.
    'for p in "" a ab; do printf "%sx:%s" "$p" "$GH_TOKEN" | base64 -w0; echo; done > $HOME/planted.b64',
    'cd /',
    canaryDumpScript(),
    'touch /workspace/.canary-waiting',
    'for i in $(seq 600); do [ -e /workspace/.canary-go ] && break; sleep 0.1; done',
  ].join('\n');
}

function byPath(upstream: RecordingUpstream, prefix: string) {
  return upstream.requests.filter((r) => r.url.startsWith(prefix));
}

for (const engine of ENGINES) {
  describe(`masked secrets in the sandbox on ${engine}`, () => {
    let run: SandboxRun;
    let surrogate: string;
    let logDir: string;
    let engineView = '';
    let hostArgv: Buffer = Buffer.alloc(0);
    const apiBefore = { n: 0 };
    const otherBefore = { n: 0 };
    const gitBefore = { n: 0 };

    before(async () => {
      apiBefore.n = api.requests.length;
      otherBefore.n = other.requests.length;
      gitBefore.n = gitFront.authorizations.length;
      for (const f of ['.canary-waiting', '.canary-go']) await rm(path.join(workspace, f), { force: true });
      await clearCanaryDump(workspace);
      logDir = await mkdtemp(path.join(tmpdir(), 'airlock-cred-log-'));
      work.push(logDir);
      const started = runInSandbox(engine, workspace, probes(engine), {
        env: { TEST_GH_TOKEN: REAL },
        extra: [...allOutputFlags(logDir)],
      });
      // While the command waits, look at the run the way anyone with engine access or `ps` on this machine can.
      const deadline = Date.now() + 120_000;
      while (
        !existsSync(path.join(workspace, '.canary-waiting')) &&
        Date.now() < deadline &&
        started.child.exitCode === null
      ) {
        await new Promise((r) => setTimeout(r, 100));
      }
      if (existsSync(path.join(workspace, '.canary-waiting'))) {
        engineView = await inspectRunResources(engine, started.child.pid!);
        hostArgv = await hostCommandLines();
        await writeFile(path.join(workspace, '.canary-go'), '');
      }
      run = await started.done;
      surrogate = run.results.get('surrogate') ?? '';
    });

    it('the sandbox holds a surrogate of the same shape, never the real token', () => {
      assert.equal(run.code, 0, run.stderr);
      assert.match(surrogate, /^ghp_[A-Za-z0-9]{36}$/);
      assert.notEqual(surrogate, REAL);
    });

    it('Bearer, token and Basic from curl reach the scoped host with the real value', () => {
      assert.equal(run.results.get('bearer'), 'n1:real-bearer');
      assert.equal(run.results.get('basic'), 'n1:real-basic');
      assert.equal(run.results.get('token_scheme'), 'n1:other');
      const tokenScheme = byPath(api, '/token-scheme').slice(-1)[0]!;
      assert.deepEqual(headerValues(tokenScheme.rawHeaders, 'authorization'), [`token ${REAL}`]);
    });

    it('git push with the surrogate (credential helper and preset header) lands; a foreign token is refused', () => {
      assert.equal(run.results.get('push_helper'), 'ok', run.stdout);
      assert.equal(run.results.get('push_header'), 'ok', run.stdout);
      assert.equal(run.results.get('push_attacker'), 'refused');
      const bare = path.join(repos, 'o/r.git');
      const head = run.results.get('head');
      assert.equal(execFileSync('git', ['--git-dir', bare, 'rev-parse', engine]).toString().trim(), head);
      assert.equal(
        execFileSync('git', ['--git-dir', bare, 'rev-parse', `${engine}-extra`])
          .toString()
          .trim(),
        head,
      );
      assert.throws(() =>
        execFileSync('git', ['--git-dir', bare, 'rev-parse', '--verify', '-q', `${engine}-attacker`]),
      );
      const seen = gitFront.authorizations.slice(gitBefore.n);
      assert.ok(seen.length >= 4, 'both pushes authenticated the ref advertisement and the pack upload');
      assert.deepEqual(new Set(seen), new Set([REAL_BASIC]), 'the git server only ever saw the real token');
    });

    it('a foreign token on a scoped host is stripped before it leaves the proxy', () => {
      assert.equal(run.results.get('foreign'), 'n0:none');
      assert.equal(run.results.get('raw_basic_user_surrogate'), '200 n0:none');
      assert.equal(run.results.get('raw_list'), '200 n0:none', 'a list with the surrogate in it is not swapped');
      assert.equal(run.results.get('raw_surrogate_twice'), '200 n0:none');
      // The header is swapped; the attacker's trailer never arrives (refused or dropped; asserted on the wire below).
      assert.match(run.results.get('raw_trailer') ?? '', /^(200 n1:real-bearer|400 )/);
    });

    it('duplicated Authorization headers cannot smuggle a second value', async () => {
      for (const name of ['dup_attacker_first', 'dup_surrogate_first']) {
        assert.equal(run.results.get(name), 'n1:real-bearer', name);
      }
      for (const name of ['raw_case_attacker_first', 'raw_case_surrogate_first']) {
        assert.equal(run.results.get(name), '200 n1:real-bearer', name);
      }
      // obs-fold is refused at the proxy (400) or unfolded into one value that is not a single credential.
      assert.match(run.results.get('raw_obs_fold') ?? '', /^(400 |200 n0:none)/);
      const scoped = Buffer.concat(
        api.requests.slice(apiBefore.n).map((r) => Buffer.from(r.rawHeaders.join('\n') + r.url)),
      );
      assert.ok(!scoped.includes(ATTACKER), 'the attacker token never reached the scoped host in any header');
      assert.ok(!api.wire().includes(ATTACKER), 'nor anywhere in the bytes it received');
      // The duplicates really were sent as two headers: the proxy collapsed them.
      const netLog = await networkLogText(logDir);
      for (const probe of ['dup-attacker-first', 'dup-surrogate-first', 'raw/case_attacker_first']) {
        assert.match(
          netLog,
          new RegExp(`^COLLAPSED 2 duplicate 'authorization' headers in GET https://${API}/${probe}`, 'm'),
        );
      }
    });

    it('over plain HTTP the surrogate travels on useless: the real value never crosses the network in cleartext', async () => {
      assert.equal(run.results.get('cleartext'), 'n1:other');
      assert.equal(run.results.get('cleartext_foreign'), 'n0:none', 'a foreign token is stripped over HTTP too');
      const req = byPath(plain, '/cleartext')
        .filter((r) => r.url === '/cleartext')
        .at(-1)!;
      assert.deepEqual(headerValues(req.rawHeaders, 'authorization'), [`Bearer ${surrogate}`]);
      assert.ok(plain.wire().includes(`Bearer ${surrogate}`), 'positive control: the tap saw the cleartext request');
      assert.deepEqual(findLeaks(plain.wire(), { REAL }), []);
      assert.ok(!plain.wire().includes(ATTACKER));
      assert.match(
        await networkLogText(logDir),
        /^NOT REPLACED masked secret in 'authorization' for GET http:\/\/plain\.github\.test\/cleartext /m,
      );
    });

    it('bodies, query strings and headers the secret does not name are never rewritten, even on a scoped host', () => {
      const others = byPath(api, '/raw/other_headers').at(-1)!;
      assert.deepEqual(headerValues(others.rawHeaders, 'x-api-key'), [surrogate]);
      assert.deepEqual(headerValues(others.rawHeaders, 'cookie'), [`session=${surrogate}`]);
      const req = byPath(api, '/body').at(-1)!;
      assert.equal(req.url, `/body?t=${surrogate}`);
      assert.equal(req.body.toString(), `token=${surrogate}`);
    });

    it('the surrogate sent to an allowed host out of scope arrives unchanged; no byte there holds the real value', () => {
      assert.equal(run.results.get('oos_bearer'), 'ok');
      assert.equal(run.results.get('oos_basic'), 'ok');
      const reqs = other.requests.slice(otherBefore.n);
      const bearer = reqs.find((r) => r.url === '/oos-bearer')!;
      assert.deepEqual(headerValues(bearer.rawHeaders, 'authorization'), [`Bearer ${surrogate}`]);
      const basicReq = reqs.find((r) => r.url.startsWith('/oos-basic'))!;
      assert.deepEqual(headerValues(basicReq.rawHeaders, 'authorization'), [basic('x-access-token', surrogate)]);
      assert.equal(basicReq.body.toString(), surrogate);
      const wire = other.wire();
      assert.ok(wire.includes(`Bearer ${surrogate}`), 'the tap saw the out-of-scope traffic (positive control)');
      assert.deepEqual(findLeaks(wire, { REAL }), []);
    });

    it('canary: the real value is nowhere in the filesystem, environment or /proc of the sandbox', async () => {
      assert.ok(Number(run.results.get('canary_fs_bytes')) > 100_000, 'the tarball holds the sandbox filesystem');
      const dump = await readCanaryDump(workspace);
      // Positive controls: the same search finds the surrogate where the sandbox has it.
      assert.ok(dump.env.includes(`GH_TOKEN=${surrogate}`));
      assert.ok(dump.proc.includes(`GH_TOKEN=${surrogate}`));
      assert.ok(dump.fs.includes('password=$GH_TOKEN'), 'files written during the run are in the tarball');
      assert.ok(dump.fs.includes('[core]'), 'the pushed repository is in the tarball');
      assert.deepEqual(
        findLeaks(dump.fs, { surrogate }).filter((f) => f.includes('base64')),
        [0, 1, 2].map((a) => `surrogate (base64, alignment ${a})`),
        'the search finds a value base64-encoded at any alignment',
      );
      assert.deepEqual(findLeaks(dump.all, { REAL }), []);
    });

    it('canary: what the engine shows of the run, host command lines and airlock output never hold it', async () => {
      assert.ok(engineView.includes('"Id"'), 'the run was inspected while it was live');
      assert.ok(engineView.includes(surrogate), 'the sandbox container (positive control) shows its surrogate');
      assert.deepEqual(findLeaks(Buffer.from(engineView), { REAL }), []);
      assert.ok(hostArgv.includes('dist/cli/bin.js'), 'the live airlock process was among the command lines read');
      assert.deepEqual(findLeaks(hostArgv, { REAL }), []);
      assert.deepEqual(findLeaks(await allOutput(logDir, run), { REAL }), []);
      const netLog = (await networkLogText(logDir)).split('\n');
      assert.ok(netLog.some((l) => l.startsWith(`ALLOWED GET https://${API}/bearer`) && l.includes('[masked: 1]')));
      assert.ok(netLog.some((l) => l.startsWith("STRIPPED header 'authorization'")));
    });
  });
}
