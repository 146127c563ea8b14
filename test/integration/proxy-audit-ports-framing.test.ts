import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createCredentialProcessor } from '../../src/proxy/credentials/index.js';
import type { RequestEvent } from '../../src/proxy/log/network-log.js';
import { startRecordingUpstream, type RecordingUpstream } from '../helpers/recording-upstream.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';
import { rawExchange, startProxyFixture, type ProxyFixture } from '../helpers/upstream.js';

/**
 * Audit mode after issue 13, on the real proxy over real sockets. A host on a port no entry opens is a policy refusal
 * (forwarded and logged `would_block`, with a hint that names the port), and forwarding it carries no real secret:
 * credential scopes name host *and* port. What issue 13 refuses to keep the request the proxy judged equal to the one
 * it delivers — a Host steering to another port, `Connection` naming an end-to-end header, h2c and malformed
 * WebSocket handshakes, an unverified 101 — stays refused in audit mode and never reaches the upstream.
 */

const SURROGATE = 'ghp_SURROGATEsurrogateSURROGATEsurrog01';
const REAL = 'ghp_REALrealREALrealREALrealREALrealRE99';
/** The port the allowlist names (judged as this, bound wherever the system likes). */
const DECLARED = 5000;

let fx: ProxyFixture;
let upstream: RecordingUpstream;

before(async () => {
  const pki = await makeTestPki(['open.test', 'other.test']);
  upstream = await startRecordingUpstream({ pki });
  fx = await startProxyFixture({
    audit: true,
    listen: { host: '127.0.0.1', http: 0, https: 0, dns: 0, ports: [{ port: DECLARED, bind: 0 }] },
    allowlist: { domains: [`open.test:${DECLARED}`] },
    upstream: {
      caPem: pki.caPem,
      hosts: { 'open.test': `127.0.0.1:${upstream.port}`, 'other.test': `127.0.0.1:${upstream.port}` },
    },
    credentials: createCredentialProcessor({
      masked: [
        {
          name: 'TOKEN',
          surrogate: SURROGATE,
          value: REAL,
          scopes: [`open.test:${DECLARED}`],
          headers: ['Authorization'],
          allowForeignCredentials: false,
        },
      ],
      signing: [],
    }),
  });
});

after(async () => {
  await fx?.close();
  await upstream?.close();
});

type Listener = 'https' | 'http' | 'declared';

/** Raw bytes to one of the proxy's listeners: TLS on 443 and on the declared port (SNI `sni`), plain on 80. */
function send(listener: Listener, sni: string, bytes: string, settleMs = 600): Promise<string> {
  const port =
    listener === 'https'
      ? fx.proxy.addresses.https
      : listener === 'http'
        ? fx.proxy.addresses.http
        : fx.proxy.addresses.ports[DECLARED]!;
  return rawExchange(
    port,
    bytes,
    settleMs,
    listener === 'http' ? undefined : { servername: sni, ca: fx.runCa.certPem },
  );
}

function statusLines(reply: string): string[] {
  return [...reply.matchAll(/HTTP\/1\.1 (\d{3})[^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n/g)].map((m) => {
    const deny = /x-airlock-deny: *(\S+)/i.exec(m[2]!);
    return deny ? `${m[1]}:${deny[1]}` : m[1]!;
  });
}

function lastRequest(): RequestEvent {
  return fx.log.events.filter((e): e is RequestEvent => e.event === 'request').at(-1)!;
}

function authorizationOf(r: { headers: Array<[string, string]> }): string[] {
  return r.headers.filter(([n]) => n.toLowerCase() === 'authorization').map(([, v]) => v);
}

const get = (path: string, host: string, extra = '') =>
  `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${SURROGATE}\r\n${extra}Connection: close\r\n\r\n`;

void describe('audit mode: a port the allowlist does not open is a policy refusal', { timeout: 60_000 }, () => {
  test('the entry’s own port: allowed, and the real token goes there (the scope names the port)', async () => {
    const before = upstream.requests.length;
    const reply = await send('declared', 'open.test', get('/own', `open.test:${DECLARED}`));
    assert.deepEqual(statusLines(reply), ['200'], reply);
    assert.deepEqual(authorizationOf(upstream.requests[before]!), [`Bearer ${REAL}`]);
    assert.deepEqual([lastRequest().decision, lastRequest().port], ['allowed', DECLARED]);
  });
  test('the same host on 443: forwarded as would_block port_not_allowed, carrying the surrogate only', async () => {
    const before = upstream.requests.length;
    const reply = await send('https', 'open.test', get('/on443', 'open.test'));
    assert.deepEqual(statusLines(reply), ['200'], reply);
    assert.equal(upstream.requests.length, before + 1, 'the upstream received it');
    assert.deepEqual(authorizationOf(upstream.requests[before]!), [`Bearer ${SURROGATE}`], 'no real secret off-port');
    const event = lastRequest();
    assert.deepEqual([event.decision, event.code, event.port], ['would_block', 'port_not_allowed', 443]);
    assert.equal(event.hint, '- {host: "open.test", path: "/on443", methods: [GET]}');
  });
  test('another host on the declared port: would_block host_not_allowed, the hint names the port', async () => {
    const before = upstream.requests.length;
    const reply = await send('declared', 'other.test', get('/x', `other.test:${DECLARED}`));
    assert.deepEqual(statusLines(reply), ['200'], reply);
    assert.deepEqual(authorizationOf(upstream.requests[before]!), [`Bearer ${SURROGATE}`]);
    const event = lastRequest();
    assert.deepEqual([event.decision, event.code, event.port], ['would_block', 'host_not_allowed', DECLARED]);
    assert.equal(event.hint, `- {host: "other.test:${DECLARED}", path: "/x", methods: [GET]}`);
  });
});

void describe('audit mode: issue 13’s refusals stay refused and reach nothing', { timeout: 60_000 }, () => {
  const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: other.test\r\n\r\n';
  const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
  async function refusedUnsent(reply: () => Promise<string>, expected: string): Promise<void> {
    const [requests, connections] = [upstream.requests.length, upstream.connections.length];
    const out = await reply();
    assert.equal(statusLines(out)[0], expected, out);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(upstream.requests.length, requests, 'the upstream parsed a request');
    assert.equal(upstream.connections.length, connections, 'the upstream was even connected to');
    assert.equal(lastRequest().decision, 'blocked');
  }
  test('a Host naming another port (steering): port_mismatch', () =>
    refusedUnsent(() => send('https', 'other.test', get('/a', `other.test:${upstream.port}`)), '403:port_mismatch'));
  test('an absolute-form target naming another port: port_mismatch', () =>
    refusedUnsent(
      () => send('http', '', `GET http://other.test:${upstream.port}/a HTTP/1.1\r\nHost: other.test\r\n\r\n`),
      '403:port_mismatch',
    ));
  test('Connection naming Content-Length (a body read as a second request): 400', () =>
    refusedUnsent(
      () =>
        send(
          'https',
          'other.test',
          `POST /a HTTP/1.1\r\nHost: other.test\r\nConnection: close, Content-Length\r\n` +
            `Content-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
        ),
      '400:connection_header_not_allowed',
    ));
  test('Connection naming Host or Authorization: 400', async () => {
    for (const named of ['Host', 'Authorization']) {
      await refusedUnsent(
        () => send('https', 'other.test', get('/a', 'other.test', `Connection: ${named}\r\n`)),
        '400:connection_header_not_allowed',
      );
    }
  });
  test('Upgrade: h2c: 403, and what follows never reaches the upstream', () =>
    refusedUnsent(
      () =>
        send(
          'http',
          '',
          'GET /h2c HTTP/1.1\r\nHost: other.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n' +
            `HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n${smuggled}`,
        ),
      '403:upgrade_not_allowed',
    ));
  test('a WebSocket handshake with a malformed key: 400', () =>
    refusedUnsent(
      () =>
        send(
          'https',
          'other.test',
          'GET /ws-real HTTP/1.1\r\nHost: other.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
            'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n',
        ),
      '400:upgrade_not_allowed',
    ));
  test('a 101 that is not an accept for the key sent: 502, and nothing after it reaches the upstream', async () => {
    const before = upstream.requests.length;
    const reply = await send(
      'https',
      'other.test',
      'GET /ws-wrong-accept HTTP/1.1\r\nHost: other.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
        `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${KEY}\r\n\r\n${smuggled}`,
    );
    assert.deepEqual(statusLines(reply), ['502'], reply);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(
      upstream.requests.slice(before).map((r) => r.url),
      ['/ws-wrong-accept'],
      'the handshake went (audit lets other.test through), the smuggled request did not',
    );
  });
});
