import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { formatTextLine } from '../../src/proxy/log/network-log.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';
import {
  startGitHttpsServer,
  startHttpsUpstream,
  startProxyFixture,
  unusedPort,
  type FakeUpstream,
  type ProxyFixture,
} from '../helpers/upstream.js';

/**
 * Real clients, configured the way the sandbox configures them: they resolve every name to the proxy (here with
 * curl's --resolve / git's http.curloptResolve) and trust the run CA. curl and git-over-HTTPS (smart protocol,
 * served by git http-backend) must work unmodified through the proxy, and be refused where the allowlist says so.
 */

const run = promisify(execFile);
let fx: ProxyFixture;
let upstream: FakeUpstream;
let git: { port: number; close(): Promise<void> };
let work: string;
let caFile: string;
let gitPort: number;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'airlock-proxy-clients-'));
  const pki = await makeTestPki(['api.test', 'git.test', 'denied.test', 'a.svc.test', 'b.svc.test', 'x.y.svc.test']);
  upstream = await startHttpsUpstream(pki);
  // A bare repository with one commit, served over smart HTTP.
  const src = join(work, 'src');
  await run('git', ['init', '-q', '-b', 'main', src]);
  await writeFile(join(src, 'README'), 'hello through the proxy\n');
  await run('git', ['-C', src, 'add', 'README']);
  await run('git', ['-C', src, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', 'first']);
  await run('git', ['clone', '-q', '--bare', src, join(work, 'repos', 'demo.git')]);
  git = await startGitHttpsServer(pki, join(work, 'repos'));
  gitPort = await unusedPort();
  fx = await startProxyFixture({
    listen: { host: '127.0.0.1', http: 0, https: 0, dns: 0, ports: [{ port: gitPort }] },
    allowlist: {
      domains: ['api.test', '*.svc.test'],
      url_prefixes: [{ host: `git.test:${gitPort}`, path: '/demo.git/*', methods: ['GET', 'POST'] }],
    },
    upstream: {
      caPem: pki.caPem,
      hosts: {
        'api.test': `127.0.0.1:${upstream.port}`,
        'git.test': `127.0.0.1:${git.port}`,
        'denied.test': `127.0.0.1:${upstream.port}`,
        'a.svc.test': `127.0.0.1:${upstream.port}`,
        'b.svc.test': `127.0.0.1:${upstream.port}`,
        'x.y.svc.test': `127.0.0.1:${upstream.port}`,
      },
    },
  });
  caFile = join(work, 'run-ca.pem');
  await writeFile(caFile, fx.runCa.certPem);
});

after(async () => {
  await fx.close();
  await upstream.close();
  await git.close();
  await rm(work, { recursive: true, force: true });
});

function curl(url: string, ...extra: string[]) {
  const host = new URL(url).hostname;
  return run('curl', [
    '-sS',
    '--max-time',
    '10',
    '--resolve',
    `${host}:443:127.0.0.1`,
    '--connect-to',
    `${host}:443:127.0.0.1:${fx.proxy.addresses.https}`,
    '--cacert',
    caFile,
    '-w',
    '\n%{http_code}',
    ...extra,
    url,
  ]);
}

void test('curl: an allowed HTTPS request succeeds against the run CA', async () => {
  const { stdout } = await curl('https://api.test/hello?x=1');
  const status = stdout.slice(stdout.lastIndexOf('\n') + 1);
  assert.equal(status, '200');
  assert.match(stdout, /"url":"\/hello\?x=1"/);
});

void test('curl: a blocked host gets the 403 JSON and the deny header', async () => {
  const { stdout } = await curl('https://denied.test/x', '-i');
  assert.match(stdout, /^HTTP\/1\.1 403/);
  assert.match(stdout, /x-airlock-deny: host_not_allowed/i);
  assert.match(stdout, /"hint":"- \{host: \\"denied.test\\"/);
});

void test('curl: a chunked upload with 100-continue goes through', async () => {
  const file = join(work, 'upload.bin');
  await writeFile(file, Buffer.alloc(3 * 1024 * 1024, 7));
  const { stdout } = await curl(
    'https://api.test/up',
    '-T',
    file,
    '-H',
    'Transfer-Encoding: chunked',
    '-H',
    'Expect: 100-continue',
  );
  assert.match(stdout, /"bodyBytes":3145728/);
});

void test('curl: without the run CA the client refuses the interception certificate', async () => {
  await assert.rejects(
    run('curl', [
      '-sS',
      '--max-time',
      '10',
      '--connect-to',
      `api.test:443:127.0.0.1:${fx.proxy.addresses.https}`,
      '--cacert',
      '/dev/null',
      'https://api.test/',
    ]),
    /certificate|SSL/i,
  );
});

void test('wildcard-matched hosts: one *.suffix leaf minted at start serves every child; curl and Python accept it', async () => {
  const mintedBefore = fx.proxy.stats().leavesMinted;
  for (const host of ['a.svc.test', 'b.svc.test']) {
    const { stdout } = await curl(`https://${host}/w`);
    assert.equal(stdout.slice(stdout.lastIndexOf('\n') + 1), '200', host);
  }
  const python = [
    'import socket, ssl, sys',
    'ctx = ssl.create_default_context(cafile=sys.argv[1])',
    'with socket.create_connection(("127.0.0.1", int(sys.argv[2]))) as s:',
    '    with ctx.wrap_socket(s, server_hostname="b.svc.test") as t:',
    '        print(t.getpeercert()["subjectAltName"])',
  ].join('\n');
  const { stdout: san } = await run('python3', ['-c', python, caFile, String(fx.proxy.addresses.https)]);
  assert.equal(san.trim(), "(('DNS', '*.svc.test'),)");
  assert.equal(fx.proxy.stats().leavesMinted, mintedBefore, 'no leaf was signed for a.svc.test or b.svc.test');
  // The wildcard leaf is valid for b.svc.test too, but that decides nothing: Host must still equal the SNI.
  const { stdout: fronted } = await curl('https://a.svc.test/w', '-i', '-H', 'Host: b.svc.test');
  assert.match(fronted, /^HTTP\/1\.1 403/);
  assert.match(fronted, /x-airlock-deny: host_mismatch/i);
  // Two labels below the suffix: a wildcard cannot cover it, so it gets (and is accepted with) its own leaf.
  const { stdout } = await curl('https://x.y.svc.test/w');
  assert.equal(stdout.slice(stdout.lastIndexOf('\n') + 1), '200');
  assert.equal(fx.proxy.stats().leavesMinted, mintedBefore + 1);
});

function gitEnv() {
  return { ...process.env, GIT_SSL_CAINFO: caFile, GIT_TERMINAL_PROMPT: '0', GIT_CONFIG_NOSYSTEM: '1', HOME: work };
}

function gitResolve(host: string) {
  return ['-c', `http.curloptResolve=${host}:${gitPort}:127.0.0.1`, '-c', 'http.proxy='];
}

void test('git clone over HTTPS (smart protocol) works through the proxy', async () => {
  // git has no --connect-to, so the URL names a port: the allowlist entry opens it (git.test:PORT), the proxy
  // listens on it, and upstream_hosts decides where the proxy connects.
  const target = join(work, 'clone');
  await run('git', [...gitResolve('git.test'), 'clone', '-q', `https://git.test:${gitPort}/demo.git`, target], {
    env: gitEnv(),
  });
  assert.equal(await readFile(join(target, 'README'), 'utf8'), 'hello through the proxy\n');
  assert.ok(
    lines().some((l) => /^ALLOWED POST https:\/\/git\.test:\d+\/demo\.git\/git-upload-pack -> 200$/.test(l)),
    'the pack negotiation went through the proxy',
  );
});

void test('git clone of a repository outside the allowed prefix is refused', async () => {
  const target = join(work, 'clone2');
  await assert.rejects(
    run('git', [...gitResolve('git.test'), 'clone', '-q', `https://git.test:${gitPort}/other.git`, target], {
      env: gitEnv(),
    }),
    /403/,
  );
});

function lines(): string[] {
  return fx.log.events.map(formatTextLine);
}
