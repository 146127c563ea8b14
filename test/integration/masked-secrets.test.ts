import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import WebSocket from 'ws';
import type { LoadedPolicy } from '../../src/cli/config/types.js';
import { generateRunCa } from '../../src/cli/session/ca.js';
import { prepareCredentials, type PreparedCredentials } from '../../src/cli/secrets/prepare.js';
import { AllowlistSchema } from '../../src/protocol/allowlist.js';
import { SandboxConfigSchema } from '../../src/protocol/sandbox-config.js';
import { randomString } from '../../src/protocol/surrogate.js';
import { createCredentialProcessor } from '../../src/proxy/credentials/index.js';
import { formatJsonLine, formatTextLine, memoryLog } from '../../src/proxy/log/network-log.js';
import { startProxy, type RunningProxy } from '../../src/proxy/start.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';
import {
  requestViaProxy,
  startHttpUpstream,
  startHttpsUpstream,
  type EchoReport,
  type FakeUpstream,
} from '../helpers/upstream.js';

/**
 * Masked secrets end to end over real TLS: the host prepares credentials exactly as `airlock run` does, the proxy
 * runs in-process with the real credential processor, and fake HTTPS upstreams on 127.0.0.1 report what arrived.
 * The sandbox side of every request holds only the surrogate.
 */

const SCOPED = 'api.github.test';
const SCOPED_APEX = 'github.test';
const OUT_OF_SCOPE = 'other.test';
/** In scope, but reached over the plain HTTP listener: a clear-text upstream. */
const SCOPED_PLAIN = 'plain.github.test';

/** A fresh "real" token per test run, so nothing in the repository could make the canary pass by accident. */
const REAL = `ghp_${randomString(36, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789')}`;
const ATTACKER = `ghp_${randomString(36, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789')}`;

const log = memoryLog();
let proxy: RunningProxy;
let scoped: FakeUpstream;
let plain: FakeUpstream;
let recorder: RecordingUpstream;
let runCa: { certPem: string; keyPem: string };
let prepared: PreparedCredentials;
let surrogate: string;

/**
 * An HTTPS server that keeps every decrypted byte it receives, so the canary can search all of it (heads and
 * bodies), not just what an HTTP parser chose to surface. Speaks just enough HTTP/1.1 for Content-Length bodies.
 */
interface RecordingUpstream {
  port: number;
  bytes(): Buffer;
  close(): Promise<void>;
}

async function startRecordingUpstream(certPem: string, keyPem: string): Promise<RecordingUpstream> {
  const chunks: Buffer[] = [];
  const sockets = new Set<tls.TLSSocket>();
  const server = tls.createServer({ cert: certPem, key: keyPem }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let pending = Buffer.alloc(0);
    socket.on('data', (data: Buffer) => {
      chunks.push(data);
      pending = Buffer.concat([pending, data]);
      for (;;) {
        const end = pending.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = pending.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        if (pending.length < end + 4 + length) return;
        pending = pending.subarray(end + 4 + length);
        socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\nrecorded');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    bytes: () => Buffer.concat(chunks),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function loadedPolicy(): LoadedPolicy {
  return {
    configDir: null,
    layout: 'none',
    sandbox: SandboxConfigSchema.parse({
      masked_secrets: {
        GH_TOKEN: { value: REAL, scopes: [SCOPED, SCOPED_APEX, SCOPED_PLAIN], headers: ['Authorization'] },
      },
    }),
    envRefs: new Map(),
    allowlist: { domains: [], url_prefixes: [] },
    allowlistSha256: '0'.repeat(64),
    files: {},
    build: null,
    warnings: [],
  };
}

before(async () => {
  const pki = await makeTestPki([SCOPED, SCOPED_APEX, OUT_OF_SCOPE]);
  runCa = await generateRunCa();
  scoped = await startHttpsUpstream(pki);
  plain = await startHttpUpstream();
  recorder = await startRecordingUpstream(pki.certPem, pki.keyPem);
  prepared = prepareCredentials(loadedPolicy(), {});
  surrogate = prepared.containerEnv.GH_TOKEN!;
  proxy = await startProxy({
    allowlist: AllowlistSchema.parse({ domains: [SCOPED, SCOPED_APEX, SCOPED_PLAIN, OUT_OF_SCOPE] }),
    ca: runCa,
    sandboxAddress: '10.199.1.100',
    listen: { host: '127.0.0.1', http: 0, https: 0, dns: 0 },
    upstream: {
      caPem: pki.caPem,
      hosts: {
        [SCOPED]: `127.0.0.1:${scoped.port}`,
        [SCOPED_APEX]: `127.0.0.1:${scoped.port}`,
        [OUT_OF_SCOPE]: `127.0.0.1:${recorder.port}`,
        [SCOPED_PLAIN]: `127.0.0.1:${plain.port}`,
      },
      resolve: () => Promise.reject(new Error('tests resolve nothing')),
    },
    credentials: createCredentialProcessor(prepared.proxyCredentials),
    log,
  });
});

after(async () => {
  await proxy.close();
  await scoped.close();
  await plain.close();
  await recorder.close();
});

function viaProxy(host: string, headers: string[], extra: { path?: string; method?: string; body?: string } = {}) {
  return requestViaProxy({
    listener: 'https',
    port: proxy.addresses.https,
    host,
    ca: runCa.certPem,
    headers: ['Host', host, ...headers],
    ...extra,
  });
}

/** The header values the upstream received under `name` (any case), in order. */
function received(echo: EchoReport, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < echo.rawHeaders.length; i += 2) {
    if (echo.rawHeaders[i]!.toLowerCase() === name) out.push(echo.rawHeaders[i + 1]!);
  }
  return out;
}

/**
 * The request as the upstream received it. Its echo is what it reported back, except the headers, which come from
 * its own record: an echo of a real value reaches the sandbox as the surrogate (credential-echo-scrubbing.test.ts).
 */
async function echoFrom(
  host: string,
  headers: string[],
  extra: { path?: string; method?: string; body?: string } = {},
): Promise<EchoReport> {
  const reply = await viaProxy(host, headers, extra);
  assert.equal(reply.status, 200, reply.body);
  const report = JSON.parse(reply.body) as EchoReport;
  const arrived = scoped.received.findLast((r) => r.url === report.url);
  assert.ok(arrived, `the scoped upstream recorded ${report.url}`);
  return { ...report, rawHeaders: arrived.rawHeaders };
}

/** Open a WebSocket through the proxy and return the Authorization values the upstream saw on the upgrade. */
async function authorizationOnUpgrade(
  url: string,
  options: WebSocket.ClientOptions,
  upstream: FakeUpstream,
): Promise<string[]> {
  const ws = new WebSocket(url, options);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.close();
  const upgrade = upstream.received.findLast((r) => r.url === new URL(url).pathname)!;
  return upgrade.rawHeaders.filter((_, i) => upgrade.rawHeaders[i - 1]?.toLowerCase() === 'authorization');
}

const basic = (userPass: string): string => `Basic ${Buffer.from(userPass).toString('base64')}`;

function logLinesFor(path: string): string[] {
  return log.events.map(formatTextLine).filter((line) => line.includes(path));
}

void describe('on the scoped host the real value arrives', () => {
  void it('the sandbox holds a surrogate, never the real value', () => {
    assert.ok(surrogate.startsWith('ghp_'));
    assert.equal(surrogate.length, REAL.length);
    assert.notEqual(surrogate, REAL);
  });

  void it('Authorization: Bearer surrogate → Bearer real, logged as [masked: 1]', async () => {
    const echo = await echoFrom(SCOPED, ['Authorization', `Bearer ${surrogate}`], { path: '/user?bearer' });
    assert.deepEqual(received(echo, 'authorization'), [`Bearer ${REAL}`]);
    // The echo reflected the real value; the sandbox read the surrogate instead.
    assert.deepEqual(logLinesFor('/user?bearer'), [
      `ALLOWED GET https://${SCOPED}/user?bearer -> 200 [masked: 1] [scrubbed: 1]`,
    ]);
  });

  void it("git's Basic x-access-token:surrogate → the real token, re-encoded", async () => {
    const echo = await echoFrom(SCOPED_APEX, ['Authorization', basic(`x-access-token:${surrogate}`)], {
      path: '/o/r.git/info/refs?service=git-receive-pack',
    });
    assert.deepEqual(received(echo, 'authorization'), [basic(`x-access-token:${REAL}`)]);
  });

  void it('a WebSocket upgrade gets the same treatment', async () => {
    // ws hands TLS options such as servername through to tls.connect; its types only list the common ones.
    const options: WebSocket.ClientOptions & { servername: string } = {
      ca: runCa.certPem,
      servername: SCOPED,
      headers: { Host: SCOPED, Authorization: `Bearer ${surrogate}` },
    };
    const auth = await authorizationOnUpgrade(`wss://127.0.0.1:${proxy.addresses.https}/ws`, options, scoped);
    assert.deepEqual(auth, [`Bearer ${REAL}`]);
  });

  void it('the surrogate in the query string and the body is forwarded untouched', async () => {
    const body = `{"token":"${surrogate}"}`;
    const echo = await echoFrom(SCOPED, ['Content-Type', 'application/json', 'Content-Length', String(body.length)], {
      method: 'POST',
      path: `/search?q=${surrogate}`,
      body,
    });
    assert.equal(echo.url, `/search?q=${surrogate}`);
    assert.equal(echo.bodySha256, createHash('sha256').update(body).digest('hex'));
  });
});

void describe('foreign and smuggled credentials on the scoped host', () => {
  void it("the sandbox's own token is stripped and the STRIPPED line logged", async () => {
    const echo = await echoFrom(SCOPED, ['Authorization', `Bearer ${ATTACKER}`], { path: '/user?foreign' });
    assert.deepEqual(received(echo, 'authorization'), []);
    const lines = logLinesFor('/user?foreign');
    assert.ok(
      lines.includes(
        `STRIPPED header 'authorization' from GET https://${SCOPED}/user?foreign (foreign credential blocked)`,
      ),
      lines.join('\n'),
    );
    assert.ok(lines.includes(`ALLOWED GET https://${SCOPED}/user?foreign -> 200 [dropped: 1]`), lines.join('\n'));
  });

  // Built when the test runs: the surrogate is minted in before().
  const duplicates: Array<[string, () => string[]]> = [
    ['attacker first', () => ['Authorization', `Bearer ${ATTACKER}`, 'Authorization', `Bearer ${surrogate}`]],
    ['surrogate first', () => ['authorization', `Bearer ${surrogate}`, 'AUTHORIZATION', `token ${ATTACKER}`]],
  ];
  for (const [what, headers] of duplicates) {
    void it(`duplicated Authorization headers (${what}) reach the upstream as the real value alone`, async () => {
      const path = `/dup?${what.replace(' ', '-')}`;
      const echo = await echoFrom(SCOPED, headers(), { path });
      assert.deepEqual(received(echo, 'authorization'), [`Bearer ${REAL}`]);
      assert.ok(!echo.rawHeaders.some((v) => v.includes(ATTACKER)));
      assert.ok(
        logLinesFor(path).includes(
          `COLLAPSED 2 duplicate 'authorization' headers in GET https://${SCOPED}${path} (duplicate credential headers removed)`,
        ),
      );
    });
  }

  void it('Basic with the surrogate as user name and the attacker token as password is stripped', async () => {
    const echo = await echoFrom(SCOPED_APEX, ['Authorization', basic(`${surrogate}:${ATTACKER}`)]);
    assert.deepEqual(received(echo, 'authorization'), []);
  });
});

void describe('a surrogate dressed up with other content never carries the real value', () => {
  // The proxy swaps only a header that is exactly one credential; anything beside the surrogate (a comma list, a
  // second scheme, a second token) could be what a lenient server reads, so the whole header is stripped.
  const smuggling: Array<[string, () => string[]]> = [
    ['comma list, attacker first', () => ['Authorization', `Bearer ${ATTACKER}, Bearer ${surrogate}`]],
    ['bare list', () => ['Authorization', `${surrogate}, ${ATTACKER}`]],
    ['second scheme', () => ['Authorization', `Bearer ${surrogate} Bearer ${ATTACKER}`]],
    ['tab and a trailing token', () => ['Authorization', `Bearer ${surrogate}\tX`]],
    ['surrogate twice', () => ['Authorization', `${surrogate} ${surrogate}`]],
    ['token list without spaces', () => ['Authorization', `token ${surrogate},token ${ATTACKER}`]],
    ['Basic password list', () => ['Authorization', basic(`x-access-token:${surrogate},${ATTACKER}`)]],
    [
      'a clean entry beside a smuggling one, mixed case',
      () => ['authorization', `Bearer ${surrogate}`, 'AUTHORIZATION', `bearer ${ATTACKER}, BEARER ${surrogate}`],
    ],
  ];
  for (const [what, headers] of smuggling) {
    void it(what, async () => {
      const path = `/smuggle?${encodeURIComponent(what)}`;
      const echo = await echoFrom(SCOPED, headers(), { path });
      assert.deepEqual(received(echo, 'authorization'), []);
      assert.ok(!echo.rawHeaders.some((v) => v.includes(REAL) || v.includes(ATTACKER)));
      const lines = logLinesFor(path);
      assert.ok(
        lines.includes(
          `STRIPPED header 'authorization' from GET https://${SCOPED}${path} (foreign credential blocked: surrogate with other content)`,
        ),
        lines.join('\n'),
      );
      assert.ok(lines.includes(`ALLOWED GET https://${SCOPED}${path} -> 200 [dropped: 1]`), lines.join('\n'));
    });
  }
});

void describe('clear text never carries the real value', () => {
  void it('a plain-HTTP request to a scoped host forwards the surrogate, never the real value', async () => {
    const path = '/user?cleartext';
    const reply = await requestViaProxy({
      listener: 'http',
      port: proxy.addresses.http,
      host: SCOPED_PLAIN,
      path,
      headers: ['Host', SCOPED_PLAIN, 'Authorization', `Bearer ${surrogate}`],
    });
    assert.equal(reply.status, 200, reply.body);
    const echo = JSON.parse(reply.body) as EchoReport;
    assert.deepEqual(received(echo, 'authorization'), [`Bearer ${surrogate}`]);
    assert.ok(
      logLinesFor(path).includes(
        `NOT REPLACED masked secret in 'authorization' for GET http://${SCOPED_PLAIN}${path} (real values are only sent over HTTPS)`,
      ),
      logLinesFor(path).join('\n'),
    );
  });

  void it('a plain ws:// upgrade to a scoped host forwards the surrogate too', async () => {
    const auth = await authorizationOnUpgrade(
      `ws://127.0.0.1:${proxy.addresses.http}/ws`,
      { headers: { Host: SCOPED_PLAIN, Authorization: `Bearer ${surrogate}` } },
      plain,
    );
    assert.deepEqual(auth, [`Bearer ${surrogate}`]);
  });
});

void describe('outside the scope the surrogate stays a surrogate', () => {
  void it('an allowed, out-of-scope host receives the surrogate unchanged and nothing is stripped', async () => {
    const reply = await viaProxy(OUT_OF_SCOPE, ['Authorization', `Bearer ${surrogate}`], { path: '/collect?plain' });
    assert.equal(reply.status, 200);
    const bytes = recorder.bytes().toString('latin1');
    assert.ok(bytes.includes(`Authorization: Bearer ${surrogate}`));
    assert.deepEqual(logLinesFor('/collect?plain'), [`ALLOWED GET https://${OUT_OF_SCOPE}/collect?plain -> 200`]);
  });

  void it('canary: no byte any out-of-scope upstream receives, and no log line, holds the real value', async () => {
    // Every place a sandbox could put the surrogate, sent to the host outside the scope.
    const body = `token=${surrogate}&basic=${basic(`x:${surrogate}`)}`;
    const attempts: Array<[string[], { path?: string; method?: string; body?: string }]> = [
      [['Authorization', `token ${surrogate}`], { path: '/c1' }],
      [['Authorization', basic(`x-access-token:${surrogate}`)], { path: '/c2' }],
      [['Authorization', basic(`${surrogate}:`)], { path: '/c3' }],
      [['X-GitHub-Token', surrogate, 'Cookie', `t=${surrogate}`], { path: `/c4?access_token=${surrogate}` }],
      [['Content-Length', String(body.length)], { path: '/c5', method: 'POST', body }],
      [['Authorization', `Bearer ${surrogate}`, 'Authorization', `Bearer ${surrogate}`], { path: '/c6' }],
    ];
    for (const [headers, extra] of attempts) {
      const reply = await viaProxy(OUT_OF_SCOPE, headers, extra);
      assert.equal(reply.status, 200);
    }
    const seen = recorder.bytes();
    assert.ok(seen.includes(surrogate), 'the recorder saw the requests');
    for (const needle of [
      REAL,
      Buffer.from(`x-access-token:${REAL}`).toString('base64'),
      Buffer.from(`${REAL}:`).toString('base64'),
    ]) {
      assert.equal(seen.includes(needle), false, 'an out-of-scope upstream received the real value');
    }
    // The whole network log, both renderings, after every test above.
    const rendered = log.events.map((e) => formatTextLine(e) + '\n' + formatJsonLine(e)).join('\n');
    assert.ok(rendered.includes('masked: 1'), 'the log saw the scoped requests');
    assert.equal(rendered.includes(REAL), false, 'the network log holds the real value');
    assert.equal(rendered.includes(ATTACKER), false, 'the network log holds a header value');
  });
});
