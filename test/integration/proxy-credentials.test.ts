import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { createCredentialProcessor } from '../../src/proxy/credentials/index.js';
import type { CredentialProcessor, RequestHead } from '../../src/proxy/credentials/types.js';
import { formatJsonLine, formatTextLine } from '../../src/proxy/log/network-log.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';
import {
  startHttpsUpstream,
  startProxyFixture,
  type EchoReport,
  type FakeUpstream,
  type ProxyFixture,
} from '../helpers/upstream.js';

/**
 * The HTTP layer's side of the credential contract: every allowed request (and only those) passes the processor,
 * its headers/target/body transform are what goes upstream, `needs-body` buffers up to its bound and answers 413
 * beyond it, and the network log carries annotations and events but never a real value.
 */

const REAL = 'ghp_REALrealREALrealREALrealREALreal0000';
const SURROGATE = 'ghp_SURRsurrSURRsurrSURRsurrSURRsurr1111';

let upstream: FakeUpstream;
let fx: ProxyFixture;
let caPem: string;
const seenHeads: RequestHead[] = [];

/** Test-only passes keyed by path, so one proxy can exercise every outcome kind. */
function scriptedPasses(real: CredentialProcessor): CredentialProcessor {
  return (head) => {
    seenHeads.push(head);
    if (head.target.startsWith('/needs-body')) {
      return {
        kind: 'needs-body',
        maxBytes: 1024,
        complete: (body) => ({
          headers: [...head.headers, ['X-Body-Sha256', createHash('sha256').update(body).digest('hex')]],
          target: head.target,
          annotations: ['hashed: 1'],
          events: [],
        }),
      };
    }
    if (head.target.startsWith('/transform')) {
      return {
        kind: 'ready',
        result: {
          headers: head.headers,
          target: '/rewritten' + head.target,
          bodyTransform: () =>
            new Transform({
              transform(chunk: Buffer, _enc, cb) {
                cb(null, Buffer.from(chunk.toString('latin1').toUpperCase(), 'latin1'));
              },
            }),
          annotations: [],
          events: [],
        },
      };
    }
    if (head.target.startsWith('/throws')) throw new Error(`boom ${REAL}`);
    return real(head);
  };
}

before(async () => {
  const pki = await makeTestPki(['api.test', 'elsewhere.test', 'blocked.test']);
  caPem = pki.caPem;
  upstream = await startHttpsUpstream(pki);
  const real = createCredentialProcessor({
    masked: [
      {
        name: 'GH_TOKEN',
        surrogate: SURROGATE,
        value: REAL,
        scopes: ['api.test'],
        headers: ['Authorization'],
        allowForeignCredentials: false,
      },
    ],
    signing: [],
  });
  fx = await startProxyFixture({
    allowlist: { domains: ['api.test', 'elsewhere.test'] },
    credentials: scriptedPasses(real),
    upstream: {
      caPem,
      hosts: Object.fromEntries(
        ['api.test', 'elsewhere.test', 'blocked.test'].map((h) => [h, `127.0.0.1:${upstream.port}`]),
      ),
    },
  });
});

after(async () => {
  await fx.close();
  await upstream.close();
});

function headerOf(echo: Pick<EchoReport, 'rawHeaders'>, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < echo.rawHeaders.length; i += 2) {
    if (echo.rawHeaders[i]!.toLowerCase() === name) out.push(echo.rawHeaders[i + 1]!);
  }
  return out;
}

void describe('masked secrets through the proxy', () => {
  void test('the surrogate is swapped for the real value on a scoped host, with a [masked: 1] annotation', async () => {
    const reply = await fx.https('api.test', {
      path: '/user',
      headers: { Host: 'api.test', Authorization: `Bearer ${SURROGATE}` },
    });
    assert.equal(reply.status, 200);
    // The upstream got the real value; its echo of it comes back to the sandbox as the surrogate.
    const arrived = upstream.received.findLast((r) => r.url === '/user')!;
    assert.deepEqual(headerOf(arrived, 'authorization'), [`Bearer ${REAL}`]);
    assert.deepEqual(headerOf(JSON.parse(reply.body) as EchoReport, 'authorization'), [`Bearer ${SURROGATE}`]);
    assert.ok(
      fx.log.events.map(formatTextLine).includes('ALLOWED GET https://api.test/user -> 200 [masked: 1] [scrubbed: 1]'),
    );
  });

  void test('out of scope the surrogate travels unchanged', async () => {
    const reply = await fx.https('elsewhere.test', {
      path: '/x',
      headers: { Host: 'elsewhere.test', Authorization: `Bearer ${SURROGATE}` },
    });
    assert.deepEqual(headerOf(JSON.parse(reply.body) as EchoReport, 'authorization'), [`Bearer ${SURROGATE}`]);
  });

  void test('a foreign credential on a scoped host is stripped and the STRIPPED line logged', async () => {
    const reply = await fx.https('api.test', {
      path: '/foreign',
      headers: { Host: 'api.test', Authorization: 'Bearer attacker' },
    });
    assert.deepEqual(headerOf(JSON.parse(reply.body) as EchoReport, 'authorization'), []);
    assert.ok(fx.log.events.some((e) => e.event === 'credential' && e.line.startsWith('STRIPPED')));
  });

  void test('a blocked request never reaches the credential passes', async () => {
    const before = seenHeads.length;
    const reply = await fx.https('blocked.test', {
      headers: { Host: 'blocked.test', Authorization: `Bearer ${SURROGATE}` },
    });
    assert.equal(reply.status, 403);
    assert.equal(seenHeads.length, before);
  });

  void test('the processor sees hop-by-hop-free headers in wire order, and the Host the proxy will send', async () => {
    await fx.https('api.test', {
      path: '/order',
      headers: ['Host', 'API.test:443', 'X-B', '1', 'Connection', 'close', 'x-a', '2', 'X-B', '3'],
    });
    const head = seenHeads.at(-1)!;
    assert.equal(head.host, 'api.test');
    assert.equal(head.hostHeader, 'api.test');
    assert.equal(head.port, 443);
    assert.deepEqual(head.headers, [
      ['Host', 'api.test'],
      ['X-B', '1'],
      ['x-a', '2'],
      ['X-B', '3'],
    ]);
  });
});

void describe('needs-body and body transforms', () => {
  void test('needs-body gets the whole body within its bound and the result is forwarded', async () => {
    const body = 'x'.repeat(1000);
    const reply = await fx.https('api.test', { method: 'POST', path: '/needs-body', body });
    assert.equal(reply.status, 200);
    const echo = JSON.parse(reply.body) as EchoReport;
    assert.equal(echo.bodyBytes, 1000);
    assert.deepEqual(headerOf(echo, 'x-body-sha256'), [createHash('sha256').update(body).digest('hex')]);
    assert.deepEqual(headerOf(echo, 'content-length'), ['1000']);
  });

  void test('a body over the needs-body bound is answered 413 and not forwarded', async () => {
    const before = upstream.received.length;
    const reply = await fx.https('api.test', { method: 'POST', path: '/needs-body', body: 'x'.repeat(5000) });
    assert.equal(reply.status, 413);
    assert.equal((JSON.parse(reply.body) as { error: string }).error, 'request_body_too_large');
    assert.equal(upstream.received.length, before);
  });

  void test('a body transform and a rewritten target are applied on the way upstream', async () => {
    const reply = await fx.https('api.test', { method: 'POST', path: '/transform?q', body: 'abc' });
    const echo = JSON.parse(reply.body) as EchoReport;
    assert.equal(echo.url, '/rewritten/transform?q');
    assert.equal(echo.bodySha256, createHash('sha256').update('ABC').digest('hex'));
    // The log names what the sandbox asked for, not the rewritten target.
    assert.ok(fx.log.events.map(formatTextLine).includes('ALLOWED POST https://api.test/transform?q -> 200'));
  });

  void test('a pass that throws fails closed with 500 and its message never reaches client or log', async () => {
    const reply = await fx.https('api.test', { path: '/throws' });
    assert.equal(reply.status, 500);
    assert.ok(!reply.body.includes(REAL));
  });
});

void test('no real value appears anywhere in the network log', () => {
  const everything = fx.log.events.map((e) => formatTextLine(e) + formatJsonLine(e)).join('\n');
  assert.ok(everything.length > 0);
  assert.ok(!everything.includes(REAL));
});
