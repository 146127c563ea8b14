import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { createCredentialProcessor } from '../../src/proxy/credentials/index.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';
import { startRecordingUpstream, websocketAccept, type RecordingUpstream } from '../helpers/recording-upstream.js';
import { startProxyFixture, type ProxyFixture } from '../helpers/upstream.js';

/**
 * Every request an upstream receives is exactly the request the proxy judged. Each test here is an attack found
 * on the real proxy with stock clients and a stock Node upstream (issue 13, findings 1-3), replayed on real
 * sockets: a port named in the request steering the proxy to another service on a mapped address; headers named
 * in `Connection` that were dropped as hop-by-hop, leaving a body without framing for the upstream to read as a
 * second, unjudged request (and to capture the next pooled request, real credential included); and bytes piped
 * after a `101` that the upstream reads as more requests. Each test checks what the upstream actually parsed.
 */

const SURROGATE = 'ghp_SURROGATEsurrogateSURROGATEsurrogate00';
const REAL = 'ghp_REALrealREALrealREALrealREALrealREAL99';

/** The real token behind SURROGATE, in Authorization, on the given scopes. */
function tokenScopedTo(scopes: string[]) {
  return createCredentialProcessor({
    masked: [
      {
        name: 'GH_TOKEN',
        surrogate: SURROGATE,
        value: REAL,
        scopes,
        headers: ['Authorization'],
        allowForeignCredentials: false,
      },
    ],
    signing: [],
  });
}

let fx: ProxyFixture;
/** The legitimate upstream of steer.test (mapped without a port) would be on 443/80; this is another service there. */
let internal: RecordingUpstream;
/** api.test and plain.test (mapped with a port): a stock server that keeps every byte and every request. */
let upstream: RecordingUpstream;

before(async () => {
  const pki = await makeTestPki(['steer.test', 'api.test', 'plain.test', 'blocked.test']);
  internal = await startRecordingUpstream({ pki });
  upstream = await startRecordingUpstream({ pki });
  fx = await startProxyFixture({
    allowlist: { domains: ['steer.test', 'api.test', 'plain.test'] },
    upstream: {
      caPem: pki.caPem,
      hosts: {
        // The documented form: the name is pinned to an address, the port is not written.
        'steer.test': '127.0.0.1',
        'api.test': `127.0.0.1:${upstream.port}`,
        'plain.test': `127.0.0.1:${upstream.port}`,
      },
    },
    credentials: tokenScopedTo(['steer.test', 'api.test']),
  });
});

after(async () => {
  await fx?.close();
  await internal?.close();
  await upstream?.close();
});

/** The proxy's client socket, plain (port 80 listener) or TLS (443) with the given SNI. */
function connect(listener: 'http' | 'https', sni: string): Promise<net.Socket | tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket =
      listener === 'https'
        ? tls.connect(
            { host: '127.0.0.1', port: fx.proxy.addresses.https, servername: sni, ca: fx.runCa.certPem },
            () => resolve(socket),
          )
        : net.connect(fx.proxy.addresses.http, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

/**
 * Sends each step's bytes in turn, waiting after each for a response head (or `waitMs`), and returns everything
 * read until the proxy closes or `settleMs` of silence after the last step.
 */
async function exchange(
  listener: 'http' | 'https',
  sni: string,
  steps: Array<string | Buffer>,
  settleMs = 400,
  /** Keep the connection open until this holds (at most 5 s): for bytes that must reach the upstream first. */
  holdUntil?: () => boolean,
): Promise<string> {
  const socket = await connect(listener, sni);
  let out = '';
  let closed = false;
  let onData: (() => void) | null = null;
  socket.on('data', (d: Buffer) => {
    out += d.toString('latin1');
    onData?.();
  });
  socket.on('error', () => undefined);
  const done = new Promise<void>((resolve) => socket.on('close', () => ((closed = true), resolve())));
  // The first wait is long (a loaded machine may take seconds to answer); once bytes flow, `ms` of silence ends it.
  const quiet = (ms: number, until: () => boolean) =>
    new Promise<void>((resolve) => {
      let timer = setTimeout(finish, Math.max(ms, 5000));
      function finish() {
        onData = null;
        resolve();
      }
      onData = () => {
        if (until()) {
          clearTimeout(timer);
          finish();
        } else {
          clearTimeout(timer);
          timer = setTimeout(finish, ms);
        }
      };
      void done.then(() => {
        clearTimeout(timer);
        finish();
      });
    });
  for (const [i, step] of steps.entries()) {
    if (closed) break;
    const heads = (out.match(/\r\n\r\n/g) ?? []).length;
    socket.write(step);
    const last = i === steps.length - 1;
    await quiet(last ? settleMs : 1000, () => !last && (out.match(/\r\n\r\n/g) ?? []).length > heads);
  }
  for (const deadline = Date.now() + 5000; holdUntil && !holdUntil() && Date.now() < deadline;) {
    await new Promise((r) => setTimeout(r, 20));
  }
  socket.destroy();
  return out;
}

function statusLines(reply: string): string[] {
  return [...reply.matchAll(/HTTP\/1\.1 (\d{3})[^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n/g)].map((m) => {
    const deny = /x-airlock-deny: *(\S+)/i.exec(m[2]!);
    return deny ? `${m[1]}:${deny[1]}` : m[1]!;
  });
}

/** Every request an upstream's parser saw, as `METHOD url Host`. */
function seen(up: RecordingUpstream): string[] {
  return up.requests.map((r) => {
    const host = r.headers.find(([n]) => n.toLowerCase() === 'host')?.[1] ?? '(no Host)';
    return `${r.method} ${r.url} ${host}`;
  });
}

function allBytes(up: RecordingUpstream): string {
  return up.connections.map((_, i) => up.bytesOf(i).toString('latin1')).join('\n');
}

/** Runs `attack` and returns what the upstreams parsed meanwhile. */
async function during(attack: () => Promise<string>): Promise<{ reply: string; internal: string[]; api: string[] }> {
  const [i, a] = [internal.requests.length, upstream.requests.length];
  const reply = await attack();
  await new Promise((r) => setTimeout(r, 50));
  return { reply, internal: seen(internal).slice(i), api: seen(upstream).slice(a) };
}

void describe('finding 1: the port comes from the policy, never from the request', { timeout: 60_000 }, () => {
  test('Host naming another port over the TLS listener: 403 port_mismatch; the other port sees nothing, the real token goes nowhere', async () => {
    const connections = internal.connections.length;
    const r = await during(() =>
      exchange('https', 'steer.test', [
        `GET /admin HTTP/1.1\r\nHost: steer.test:${internal.port}\r\nAuthorization: Bearer ${SURROGATE}\r\nConnection: close\r\n\r\n`,
      ]),
    );
    assert.deepEqual(r.internal, []);
    assert.equal(internal.connections.length, connections, 'not even a connection reached the other port');
    assert.ok(!allBytes(internal).includes(REAL));
    assert.deepEqual(statusLines(r.reply), ['403:port_mismatch'], r.reply);
  });

  test('the same over the plain listener, and as an absolute-form target', async () => {
    const connections = internal.connections.length;
    const hostPort = `steer.test:${internal.port}`;
    const r = await during(async () =>
      [
        await exchange('http', '', [`GET /a HTTP/1.1\r\nHost: ${hostPort}\r\nConnection: close\r\n\r\n`]),
        await exchange('http', '', [
          `GET http://${hostPort}/b HTTP/1.1\r\nHost: ${hostPort}\r\nConnection: close\r\n\r\n`,
        ]),
        await exchange('http', '', [
          `GET http://${hostPort}/c HTTP/1.1\r\nHost: steer.test\r\nConnection: close\r\n\r\n`,
        ]),
        await exchange('https', 'steer.test', [
          `GET https://${hostPort}/d HTTP/1.1\r\nHost: steer.test\r\nConnection: close\r\n\r\n`,
        ]),
      ].join(''),
    );
    assert.deepEqual(r.internal, []);
    assert.equal(internal.connections.length, connections);
    assert.deepEqual(statusLines(r.reply), Array(4).fill('403:port_mismatch'), r.reply);
  });

  test('an explicit default port in Host is the same port, not a mismatch', async () => {
    const r = await during(() =>
      exchange('https', 'api.test', ['GET /x HTTP/1.1\r\nHost: api.test:443\r\nConnection: close\r\n\r\n']),
    );
    assert.deepEqual(r.api, ['GET /x api.test']);
    assert.deepEqual(statusLines(r.reply), ['200']);
  });
});

void describe('finding 2: Connection never removes an end-to-end header', { timeout: 60_000 }, () => {
  const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: blocked.test\r\n\r\n';

  test('Connection: content-length on a GET with a body: 400, and the body is never read as a second request', async () => {
    const r = await during(() =>
      exchange('http', '', [
        `GET /a HTTP/1.1\r\nHost: plain.test\r\nConnection: content-length\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
      ]),
    );
    assert.deepEqual(r.api, []);
    assert.deepEqual(statusLines(r.reply), ['400:connection_header_not_allowed'], r.reply);
  });

  test('a smuggled unfinished POST cannot capture the next pooled request and its real credential', async () => {
    const capture = 'POST /collect HTTP/1.1\r\nHost: blocked.test\r\nContent-Length: 160\r\n\r\n';
    const first = await during(() =>
      exchange('https', 'api.test', [
        `GET /first HTTP/1.1\r\nHost: api.test\r\nConnection: keep-alive, Content-Length\r\nContent-Length: ${capture.length}\r\n\r\n${capture}`,
      ]),
    );
    // The victim: the next request to the same upstream, carrying the secret the proxy swaps in.
    const filler = 'x'.repeat(300);
    const second = await during(() =>
      exchange('https', 'api.test', [
        `POST /next HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer ${SURROGATE}\r\nContent-Length: ${filler.length}\r\nConnection: close\r\n\r\n${filler}`,
      ]),
    );
    assert.deepEqual([...first.api, ...second.api], ['POST /next api.test']);
    assert.deepEqual(statusLines(first.reply), ['400:connection_header_not_allowed'], first.reply);
    assert.deepEqual(statusLines(second.reply), ['200'], second.reply);
    const victim = upstream.requests.at(-1)!;
    assert.deepEqual(
      victim.headers.filter(([n]) => n.toLowerCase() === 'authorization'),
      [['Authorization', `Bearer ${REAL}`]],
    );
    assert.ok(!upstream.requests.some((q) => q.body.includes(REAL)), 'the real token was read as a body');
  });

  for (const named of ['host', 'transfer-encoding', 'authorization', 'cookie', 'x-amz-date', 'content-encoding']) {
    test(`Connection: ${named} is refused with 400 before anything is forwarded`, async () => {
      const chunked = named === 'transfer-encoding';
      const r = await during(() =>
        exchange('http', '', [
          `POST /b HTTP/1.1\r\nHost: plain.test\r\nConnection: ${named}\r\nAuthorization: Bearer x\r\nCookie: a=b\r\n` +
            `X-Amz-Date: 20260101T000000Z\r\nContent-Encoding: identity\r\n` +
            (chunked ? `Transfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n` : `Content-Length: 4\r\n\r\nbody`),
        ]),
      );
      assert.deepEqual(r.api, []);
      assert.deepEqual(statusLines(r.reply), ['400:connection_header_not_allowed'], r.reply);
    });
  }

  test('a Connection list of genuinely hop-by-hop names still passes, without them', async () => {
    const r = await during(() =>
      exchange('http', '', [
        'GET /c HTTP/1.1\r\nHost: plain.test\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-End: 2\r\n\r\n',
      ]),
    );
    assert.deepEqual(r.api, ['GET /c plain.test']);
    const names = upstream.requests.at(-1)!.headers.map(([n]) => n.toLowerCase());
    assert.ok(!names.includes('x-hop') && names.includes('x-end'));
    assert.deepEqual(statusLines(r.reply), ['200']);
  });

  test('a GET with a body reaches the upstream framed: one request, the whole body', async () => {
    const r = await during(() =>
      exchange('http', '', [
        `GET /d HTTP/1.1\r\nHost: plain.test\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
      ]),
    );
    assert.deepEqual(r.api, ['GET /d plain.test']);
    assert.equal(upstream.requests.at(-1)!.body.toString('latin1'), smuggled);
    assert.deepEqual(statusLines(r.reply), ['200']);
  });
});

void describe('finding 3: nothing is piped after a 101 the proxy has not verified', { timeout: 60_000 }, () => {
  const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: blocked.test\r\n\r\n';
  const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
  const handshake = (path: string, host: string, extra = '') =>
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
    `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${KEY}\r\n${extra}\r\n`;

  test('Upgrade: h2c is refused before the upstream is contacted', async () => {
    const r = await during(() =>
      exchange('http', '', [
        'GET /h2c HTTP/1.1\r\nHost: plain.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n' +
          'HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n',
        smuggled,
      ]),
    );
    assert.deepEqual(r.api, []);
    assert.deepEqual(statusLines(r.reply)[0], '403:upgrade_not_allowed', r.reply);
  });

  test('any other upgrade token is refused as well', async () => {
    const r = await during(() =>
      exchange('https', 'api.test', [
        'GET /x HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: tls/1.3\r\n\r\n',
      ]),
    );
    assert.deepEqual(r.api, []);
    assert.deepEqual(statusLines(r.reply), ['403:upgrade_not_allowed'], r.reply);
  });

  for (const [what, path] of [
    ['no Sec-WebSocket-Accept', '/ws-none'],
    ['a wrong Sec-WebSocket-Accept', '/ws-wrong-accept'],
  ] as const) {
    test(`a 101 with ${what}: 502, the connection closes, nothing that follows reaches the upstream`, async () => {
      const r = await during(() => exchange('https', 'api.test', [handshake(path, 'api.test'), smuggled]));
      assert.deepEqual(r.api, [`GET ${path} api.test`]);
      assert.deepEqual(statusLines(r.reply), ['502'], r.reply);
    });
  }

  test('a genuine WebSocket accept is relayed and the bytes flow both ways', async () => {
    const connections = upstream.connections.length;
    const frame = Buffer.from([0x81, 0x85, 1, 2, 3, 4, 0x69, 0x67, 0x6f, 0x68, 0x6e]);
    const accepted = () => upstream.connections.slice(connections).find((c) => c.httpEndsAt !== null);
    const arrived = () => {
      const c = accepted();
      return c !== undefined && Buffer.concat(c.chunks).length >= c.httpEndsAt! + frame.length;
    };
    const r = await during(() =>
      exchange('https', 'api.test', [handshake('/ws-real', 'api.test'), frame], 400, arrived),
    );
    assert.match(r.reply, /^HTTP\/1\.1 101 /);
    assert.match(r.reply, new RegExp(`Sec-WebSocket-Accept: ${websocketAccept(KEY).replace(/[+/]/g, '\\$&')}`, 'i'));
    assert.deepEqual(r.api, ['GET /ws-real api.test']);
    const conn = accepted();
    assert.ok(conn, 'the upstream accepted the WebSocket');
    const bytes = Buffer.concat(conn.chunks);
    assert.deepEqual(bytes.subarray(conn.httpEndsAt!), frame, 'the frame reached the upstream after the accept');
  });

  for (const [what, extra, version] of [
    ['without a key', '', '13'],
    ['with version 8', `Sec-WebSocket-Key: ${KEY}\r\n`, '8'],
    ['with a key that is not 16 bytes', 'Sec-WebSocket-Key: c2hvcnQ=\r\n', '13'],
  ] as const) {
    test(`a WebSocket handshake ${what} is refused with 400`, async () => {
      const r = await during(() =>
        exchange('https', 'api.test', [
          `GET /ws-real HTTP/1.1\r\nHost: api.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
            `Sec-WebSocket-Version: ${version}\r\n${extra}\r\n`,
        ]),
      );
      assert.deepEqual(r.api, []);
      assert.deepEqual(statusLines(r.reply), ['400:upgrade_not_allowed'], r.reply);
    });
  }
});

void describe('ports an allowlist entry names get a listener of their own', { timeout: 60_000 }, () => {
  let ported: ProxyFixture;
  /** svc.test's service: its port is the one the allowlist names, so the upstream port is the listener's. */
  let svc: RecordingUpstream;
  /** keyed.test:PORT is mapped (by a key naming that port) to this other service. */
  let keyed: RecordingUpstream;
  let port: number;

  before(async () => {
    const pki = await makeTestPki(['svc.test', 'keyed.test']);
    svc = await startRecordingUpstream({ pki });
    keyed = await startRecordingUpstream({ pki });
    port = svc.port;
    ported = await startProxyFixture({
      // Judged as `port`, bound wherever the system likes: the test cannot own a fixed port.
      listen: { host: '127.0.0.1', http: 0, https: 0, dns: 0, ports: [{ port, bind: 0 }] },
      allowlist: { domains: [`svc.test:${port}`, `keyed.test:${port}`, 'keyed.test'] },
      upstream: {
        caPem: pki.caPem,
        hosts: {
          'svc.test': '127.0.0.1',
          [`keyed.test:${port}`]: `127.0.0.1:${keyed.port}`,
          'keyed.test': '127.0.0.1:9',
        },
      },
      credentials: tokenScopedTo([`svc.test:${port}`]),
    });
  });

  after(async () => {
    await ported?.close();
    await svc?.close();
    await keyed?.close();
  });

  /** One request on the declared port's listener, TLS or plain, as raw bytes. */
  function onPort(tlsToo: boolean, bytes: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const bound = ported.proxy.addresses.ports[port]!;
      const socket = tlsToo
        ? tls.connect({ host: '127.0.0.1', port: bound, servername: 'svc.test', ca: ported.runCa.certPem })
        : net.connect(bound, '127.0.0.1');
      let out = '';
      socket.once(tlsToo ? 'secureConnect' : 'connect', () => socket.write(bytes));
      socket.on('data', (d: Buffer) => (out += d.toString('latin1')));
      socket.on('close', () => resolve(out));
      socket.on('error', reject);
    });
  }

  test('TLS and plain HTTP on one declared port; the upstream port is that port and Host carries it', async () => {
    const before = svc.requests.length;
    const get = (path: string) =>
      `GET ${path} HTTP/1.1\r\nHost: svc.test:${port}\r\nAuthorization: Bearer ${SURROGATE}\r\nConnection: close\r\n\r\n`;
    const secure = await onPort(true, get('/tls'));
    const plain = await onPort(false, get('/plain'));
    assert.deepEqual([statusLines(secure), statusLines(plain)], [['200'], ['200']]);
    const seenNow = svc.requests.slice(before);
    assert.deepEqual(
      seenNow.map((q) => `${q.url} ${fromHost(q.headers)} ${auth(q.headers)}`),
      [`/tls svc.test:${port} Bearer ${REAL}`, `/plain svc.test:${port} Bearer ${SURROGATE}`],
      'the scope names the port: the real token goes there, over TLS only',
    );
    const logged = ported.log.events.filter((e) => e.event === 'request' && e.path === '/tls');
    assert.equal(logged[0]?.event === 'request' && logged[0].port, port);
  });

  test('on the declared port, a Host without it (or with another) is a mismatch; on 443 the host is not open', async () => {
    const before = svc.requests.length;
    const bare = await onPort(false, 'GET /a HTTP/1.1\r\nHost: svc.test\r\nConnection: close\r\n\r\n');
    const other = await onPort(false, `GET /a HTTP/1.1\r\nHost: svc.test:${keyed.port}\r\nConnection: close\r\n\r\n`);
    const on443 = await ported.https('svc.test', { path: '/a' });
    assert.deepEqual(
      [...statusLines(bare), ...statusLines(other), `${on443.status}:${String(on443.headers['x-airlock-deny'])}`],
      ['403:port_mismatch', '403:port_mismatch', '403:port_not_allowed'],
    );
    assert.equal(svc.requests.length, before);
  });

  test('an upstream_hosts key naming the port maps that port only', async () => {
    const before = keyed.requests.length;
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(ported.proxy.addresses.ports[port]!, '127.0.0.1', () =>
        socket.write(`GET /k HTTP/1.1\r\nHost: keyed.test:${port}\r\nConnection: close\r\n\r\n`),
      );
      let out = '';
      socket.on('data', (d: Buffer) => (out += d.toString('latin1')));
      socket.on('close', () => resolve(out));
      socket.on('error', reject);
    });
    assert.deepEqual(statusLines(reply), ['200']);
    assert.deepEqual(
      keyed.requests.slice(before).map((q) => q.url),
      ['/k'],
    );
  });
});

function fromHost(headers: Array<[string, string]>): string {
  return headers.find(([n]) => n.toLowerCase() === 'host')?.[1] ?? '(no Host)';
}

function auth(headers: Array<[string, string]>): string {
  return headers.find(([n]) => n.toLowerCase() === 'authorization')?.[1] ?? '(none)';
}
