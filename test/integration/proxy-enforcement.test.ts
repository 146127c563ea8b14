import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request as httpsRequest } from 'node:https';
import tls from 'node:tls';
import { formatTextLine } from '../../src/proxy/log/network-log.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';
import {
  rawExchange,
  startHttpUpstream,
  startHttpsUpstream,
  startProxyFixture,
  type EchoReport,
  type FakeUpstream,
  type ProxyFixture,
} from '../helpers/upstream.js';

/**
 * Every check a request passes, in order, against the real proxy on real sockets: CONNECT, TRACE/TRACK, host
 * agreement (SNI, Host, absolute-form), path validation, the allowlist. A refused request must never reach the
 * upstream, so each refusal also asserts the fake upstream saw nothing.
 */

let fx: ProxyFixture;
let secure: FakeUpstream;
let plain: FakeUpstream;

before(async () => {
  const pki = await makeTestPki(['api.test', 'paths.test', 'other.test']);
  secure = await startHttpsUpstream(pki);
  plain = await startHttpUpstream();
  fx = await startProxyFixture({
    allowlist: {
      domains: ['api.test', 'plain.test'],
      url_prefixes: [
        { host: 'paths.test', path: '/v1/*', methods: ['GET'] },
        { host: 'paths.test', path: '/v2/upload', methods: ['POST'] },
      ],
    },
    upstream: {
      caPem: pki.caPem,
      hosts: {
        'api.test': `127.0.0.1:${secure.port}`,
        'paths.test': `127.0.0.1:${secure.port}`,
        'other.test': `127.0.0.1:${secure.port}`,
        'plain.test': `127.0.0.1:${plain.port}`,
      },
    },
  });
});

after(async () => {
  await fx.close();
  await secure.close();
  await plain.close();
});

const https: ProxyFixture['https'] = (host, extra) => fx.https(host, extra);
const http: ProxyFixture['http'] = (host, extra) => fx.http(host, extra);

/** Runs a request and returns what the upstreams received meanwhile. */
async function upstreamSeen<T>(run: () => Promise<T>): Promise<{ result: T; seen: number }> {
  const before = secure.received.length + plain.received.length;
  const result = await run();
  return { result, seen: secure.received.length + plain.received.length - before };
}

function assertDenied(
  reply: { status: number; headers: Record<string, unknown>; body: string },
  code: string,
  seen: number,
) {
  assert.equal(reply.status, 403, reply.body);
  assert.equal(reply.headers['x-airlock-deny'], code);
  assert.equal(reply.headers['content-type'], 'application/json');
  const body = JSON.parse(reply.body) as Record<string, unknown>;
  assert.equal(body.error, 'blocked_by_network_allowlist');
  assert.equal(body.code, code);
  assert.equal(typeof body.reason, 'string');
  assert.equal(seen, 0, 'a refused request must not reach the upstream');
  return body;
}

void describe('allowed requests', () => {
  void test('HTTPS to an allowed domain reaches the upstream with the same method, target and Host', async () => {
    const reply = await https('api.test', { method: 'POST', path: '/x/y?q=1', body: 'hello' });
    assert.equal(reply.status, 200);
    const echo = JSON.parse(reply.body) as EchoReport;
    assert.equal(echo.method, 'POST');
    assert.equal(echo.url, '/x/y?q=1');
    assert.equal(echo.bodyBytes, 5);
    assert.deepEqual(
      echo.rawHeaders.filter((_, i) => i % 2 === 0 && echo.rawHeaders[i]!.toLowerCase() === 'host').length,
      1,
    );
    assert.ok(echo.rawHeaders.includes('api.test'));
    const line = fx.log.events.map(formatTextLine).find((l) => l.startsWith('ALLOWED POST https://api.test/x/y?q=1'));
    assert.equal(line, 'ALLOWED POST https://api.test/x/y?q=1 -> 200');
  });

  void test('HTTP is routed by Host to a plain upstream', async () => {
    const reply = await http('plain.test', { path: '/plain' });
    assert.equal(reply.status, 200);
    assert.equal((JSON.parse(reply.body) as EchoReport).url, '/plain');
  });

  void test('an absolute-form target naming the Host is forwarded in origin form', async () => {
    const reply = await http('plain.test', { path: 'http://plain.test/abs?x=1' });
    assert.equal(reply.status, 200);
    assert.equal((JSON.parse(reply.body) as EchoReport).url, '/abs?x=1');
  });

  void test('the upstream status is passed through, not replaced', async () => {
    const reply = await https('api.test', { path: '/status/418' });
    assert.equal(reply.status, 418);
  });

  void test('hop-by-hop headers and headers named by Connection never reach the upstream', async () => {
    const reply = await https('api.test', {
      headers: [
        'Host',
        'api.test',
        'Connection',
        'keep-alive, X-Hop-Secret',
        'X-Hop-Secret',
        'must-not-travel',
        'Proxy-Authorization',
        'Basic c2VjcmV0',
        'Keep-Alive',
        'timeout=5',
        'TE',
        'trailers',
        'X-End-To-End',
        'travels',
      ],
    });
    const names = (JSON.parse(reply.body) as EchoReport).rawHeaders
      .filter((_, i) => i % 2 === 0)
      .map((n) => n.toLowerCase());
    for (const hop of ['x-hop-secret', 'proxy-authorization', 'keep-alive', 'te']) assert.ok(!names.includes(hop), hop);
    assert.ok(names.includes('x-end-to-end'));
  });
});

void test('request and response headers up to 64 KiB pass in both directions (Node’s default is 16 KiB)', async () => {
  const big = 'a'.repeat(40 * 1024);
  const reply = await new Promise<{ status: number; header: string }>((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port: fx.proxy.addresses.https,
        servername: 'api.test',
        ca: fx.runCa.certPem,
        path: '/header/40000',
        headers: { Host: 'api.test', 'X-Client-Big': big },
        maxHeaderSize: 128 * 1024,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, header: String(res.headers['x-big']) }));
      },
    );
    req.on('error', reject);
    req.end();
  });
  assert.equal(reply.status, 200);
  assert.equal(reply.header.length, 40000);
});

void describe('allowlist refusals', () => {
  void test('a host not in the allowlist gets 403 host_not_allowed with the entry that would permit it', async () => {
    const { result, seen } = await upstreamSeen(() => https('other.test', { path: '/data?x=1' }));
    const body = assertDenied(result, 'host_not_allowed', seen);
    assert.deepEqual(Object.keys(body), ['error', 'code', 'method', 'host', 'path', 'reason', 'hint', 'fix']);
    assert.equal(body.host, 'other.test');
    assert.equal(body.path, '/data?x=1');
    assert.equal(body.method, 'GET');
    assert.equal(body.hint, '- {host: "other.test", path: "/data[?]*", methods: [GET]}');
    const line = fx.log.events.map(formatTextLine).find((l) => l.startsWith('BLOCKED GET https://other.test/data'));
    assert.equal(line, 'BLOCKED GET https://other.test/data?x=1 -> 403 (host_not_allowed)');
  });

  void test('a path outside the host’s url_prefixes gets path_not_allowed', async () => {
    const { result, seen } = await upstreamSeen(() => https('paths.test', { path: '/v3/x' }));
    assertDenied(result, 'path_not_allowed', seen);
  });

  void test('a method outside the matching entry gets method_not_allowed', async () => {
    const { result, seen } = await upstreamSeen(() => https('paths.test', { method: 'DELETE', path: '/v1/x' }));
    assertDenied(result, 'method_not_allowed', seen);
    const ok = await https('paths.test', { path: '/v1/x' });
    assert.equal(ok.status, 200);
  });

  for (const path of ['/%2e%2e/etc/passwd', '/a/..?x', '/a/%2E%2E/b', '/a\\b', '/a/%00']) {
    void test(`the path ${path} is refused as invalid_path even on an allowed host`, async () => {
      const { result, seen } = await upstreamSeen(() => https('api.test', { path }));
      assertDenied(result, 'invalid_path', seen);
    });
  }
});

void describe('checks before the allowlist, in order', () => {
  void test('CONNECT is refused with 403 connect_not_allowed, even to an allowed host', async () => {
    const reply = await rawExchange(
      fx.proxy.addresses.http,
      'CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n',
    );
    assert.match(reply, /^HTTP\/1\.1 403 /);
    assert.match(reply, /X-Airlock-Deny: connect_not_allowed/);
    assert.ok(fx.log.events.map(formatTextLine).includes('BLOCKED CONNECT api.test:443 -> 403 (connect_not_allowed)'));
  });

  void test('TRACE is refused even to an allowed host (it echoes credentials back)', async () => {
    const { result, seen } = await upstreamSeen(() => https('api.test', { method: 'TRACE' }));
    assertDenied(result, 'trace_not_allowed', seen);
  });

  void test('TRACK never gets through: Node’s strict parser rejects the unknown method with a 400', async () => {
    const { result, seen } = await upstreamSeen(() =>
      rawExchange(fx.proxy.addresses.http, 'TRACK / HTTP/1.1\r\nHost: plain.test\r\n\r\n'),
    );
    assert.match(result, /^HTTP\/1\.1 400 /);
    assert.equal(seen, 0);
  });

  void test('TRACE is refused before the host-mismatch check', async () => {
    const { result, seen } = await upstreamSeen(() =>
      https('api.test', { method: 'TRACE', headers: { Host: 'other.test' } }),
    );
    assertDenied(result, 'trace_not_allowed', seen);
  });

  void test('SNI naming one host and Host another is host_mismatch (no domain fronting)', async () => {
    const { result, seen } = await upstreamSeen(() => https('other.test', { sni: 'api.test' }));
    assertDenied(result, 'host_mismatch', seen);
    // The reverse: an allowed Host behind a disallowed SNI is refused just the same.
    const reverse = await upstreamSeen(() => https('api.test', { sni: 'other.test' }));
    assertDenied(reverse.result, 'host_mismatch', reverse.seen);
  });

  void test('case and port differences are not a mismatch', async () => {
    const reply = await https('api.test', { sni: 'API.test', headers: { Host: 'Api.Test:443' } });
    assert.equal(reply.status, 200);
  });

  void test('an absolute-form target naming another host is refused on both listeners', async () => {
    const onHttps = await upstreamSeen(() => https('api.test', { path: 'https://other.test/x' }));
    assertDenied(onHttps.result, 'host_mismatch', onHttps.seen);
    const onHttp = await upstreamSeen(() => http('plain.test', { path: 'http://api.test/x' }));
    assertDenied(onHttp.result, 'host_mismatch', onHttp.seen);
    const userinfo = await upstreamSeen(() => http('plain.test', { path: 'http://plain.test@evil.test/x' }));
    assertDenied(userinfo.result, 'host_mismatch', userinfo.seen);
  });

  void test('host mismatch is checked before path validation', async () => {
    const { result, seen } = await upstreamSeen(() => https('other.test', { sni: 'api.test', path: '/%2e%2e/x' }));
    assertDenied(result, 'host_mismatch', seen);
  });

  void test('path validation comes before the allowlist', async () => {
    const { result, seen } = await upstreamSeen(() => https('other.test', { path: '/a/../b' }));
    assertDenied(result, 'invalid_path', seen);
  });

  void test('a TLS handshake without SNI is refused and logged', async () => {
    const error = await new Promise<Error | null>((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port: fx.proxy.addresses.https, ca: fx.runCa.certPem });
      socket.on('secureConnect', () => {
        socket.destroy();
        resolve(null);
      });
      socket.on('error', resolve);
    });
    assert.ok(error, 'the handshake must fail');
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(
      fx.log.events.some((e) => e.event === 'tls' && e.code === 'host_mismatch' && e.servername === null),
      'the refusal is logged',
    );
  });

  void test('two Host headers are a 400', async () => {
    const reply = await rawExchange(
      fx.proxy.addresses.http,
      'GET / HTTP/1.1\r\nHost: plain.test\r\nHost: api.test\r\nConnection: close\r\n\r\n',
    );
    assert.match(reply, /^HTTP\/1\.1 400 /);
  });

  void test('HTTP/1.0 without Host is refused as missing_host', async () => {
    const reply = await rawExchange(fx.proxy.addresses.http, 'GET / HTTP/1.0\r\n\r\n');
    assert.match(reply, /^HTTP\/1\.1 403 /);
    assert.match(reply, /X-Airlock-Deny: missing_host/);
  });

  void test('Content-Length together with Transfer-Encoding is a 400 and nothing is forwarded', async () => {
    const { result, seen } = await upstreamSeen(() =>
      rawExchange(
        fx.proxy.addresses.http,
        'POST / HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: plain.test\r\n\r\n',
      ),
    );
    assert.match(result, /^HTTP\/1\.1 400 /);
    assert.doesNotMatch(result, /200 OK/);
    assert.equal(seen, 0);
  });

  void test('a refused upload is drained and the client reads the 403', async () => {
    const body = Buffer.alloc(2 * 1024 * 1024, 0x61);
    const { result, seen } = await upstreamSeen(() => https('other.test', { method: 'PUT', path: '/big', body }));
    const denied = assertDenied(result, 'host_not_allowed', seen);
    assert.equal(denied.method, 'PUT');
    const event = fx.log.events.find((e) => e.event === 'request' && e.url === 'https://other.test/big');
    assert.equal(event?.event === 'request' && event.bytesIn, body.length);
  });
});
