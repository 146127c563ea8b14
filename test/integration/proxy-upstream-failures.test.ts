import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { formatTextLine } from '../../src/proxy/log/network-log.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';
import {
  startHttpsUpstream,
  startProxyFixture,
  startResettingServer,
  startSilentServer,
  unusedPort,
  type FakeUpstream,
  type ProxyFixture,
} from '../helpers/upstream.js';

/**
 * Upstream failures answer 502 and leave the proxy serving; names that resolve into internal address space are
 * refused before any connection (the SSRF / DNS-rebinding guard), unless mapped explicitly in upstream hosts.
 */

let fx: ProxyFixture;
let good: FakeUpstream;
let untrusted: FakeUpstream;
const closers: Array<() => Promise<void>> = [];
const resolved: string[] = [];

/** A hostile DNS: each name resolves to the address its first label encodes. */
const HOSTILE_DNS: Record<string, string[]> = {
  'loopback.test': ['127.0.0.1'],
  'private.test': ['10.0.0.5'],
  'metadata.test': ['169.254.169.254'],
  'v6-loopback.test': ['::1'],
  'v6-metadata.test': ['fd00:ec2::254'],
  'mapped-v4.test': ['::ffff:127.0.0.1'],
  'cgnat.test': ['100.64.1.1'],
  'mixed.test': ['93.184.216.34', '192.168.1.1'],
};

before(async () => {
  const pki = await makeTestPki(['good.test', 'untrusted.test', 'mapped-private.test']);
  const stranger = await makeTestPki(['untrusted.test']);
  good = await startHttpsUpstream(pki);
  untrusted = await startHttpsUpstream(stranger);
  const reset = await startResettingServer();
  const silent = await startSilentServer();
  const refusedPort = await unusedPort();
  closers.push(
    () => good.close(),
    () => untrusted.close(),
    () => reset.close(),
    () => silent.close(),
  );
  fx = await startProxyFixture({
    allowlist: { domains: ['*.test'] },
    upstream: {
      caPem: pki.caPem,
      connectTimeoutMs: 400,
      idleTimeoutMs: 600,
      hosts: {
        'good.test': `127.0.0.1:${good.port}`,
        'mapped-private.test': `127.0.0.1:${good.port}`,
        'untrusted.test': `127.0.0.1:${untrusted.port}`,
        'wrong-name.test': `127.0.0.1:${good.port}`,
        'refused.test': `127.0.0.1:${refusedPort}`,
        'reset.test': `127.0.0.1:${reset.port}`,
        'silent.test': `127.0.0.1:${silent.port}`,
      },
      resolve: (name) => {
        resolved.push(name);
        const answer = HOSTILE_DNS[name];
        return answer ? Promise.resolve(answer) : Promise.reject(Object.assign(new Error('nx'), { code: 'ENOTFOUND' }));
      },
    },
  });
});

after(async () => {
  await fx.close();
  for (const close of closers) await close();
});

async function assertStillServing() {
  const reply = await fx.https('good.test', { path: '/after' });
  assert.equal(reply.status, 200);
}

void describe('upstream failures answer 502 and the proxy keeps serving', () => {
  const cases: Array<[string, RegExp]> = [
    ['refused.test', /connection refused/],
    ['reset.test', /reset|closed|ECONNRESET|socket/i],
    ['silent.test', /timed out/],
    ['untrusted.test', /bad certificate/],
    // A certificate from a trusted CA, but for other names: the name the request asked for is what must match.
    ['wrong-name.test', /bad certificate \(ERR_TLS_CERT_ALTNAME_INVALID\)/],
  ];
  for (const [host, reason] of cases) {
    void test(`${host.split('.')[0]}: 502 upstream_error and an ERROR line`, async () => {
      const reply = await fx.https(host, { path: '/x' });
      assert.equal(reply.status, 502, reply.body);
      const body = JSON.parse(reply.body) as { error: string; reason: string; host: string };
      assert.equal(body.error, 'upstream_error');
      assert.equal(body.host, host);
      assert.match(body.reason, reason);
      const line = fx.log.events.map(formatTextLine).find((l) => l.startsWith(`ERROR GET https://${host}/x -> `));
      assert.ok(line, `an ERROR line for ${host}`);
      assert.equal(
        fx.log.events.some((e) => e.event === 'request' && e.host === host),
        false,
        'no ALLOWED line for a failed exchange',
      );
      await assertStillServing();
    });
  }

  void test('an upstream that accepts the request and then falls silent times out with 502', async () => {
    const started = Date.now();
    const reply = await fx.https('good.test', { path: '/stall' });
    assert.equal(reply.status, 502);
    assert.match((JSON.parse(reply.body) as { reason: string }).reason, /timed out: upstream silent for 600 ms/);
    assert.ok(Date.now() - started < 5000);
    await assertStillServing();
  });

  void test('an untrusted upstream certificate is never accepted, whatever the client trusts', async () => {
    const reply = await fx.https('untrusted.test', { path: '/x' });
    assert.equal(reply.status, 502);
    assert.equal(untrusted.received.length, 0, 'no request went over the unverified connection');
  });

  void test('a name that does not resolve is a 502', async () => {
    const reply = await fx.https('nowhere.test', { path: '/x' });
    assert.equal(reply.status, 502);
    assert.match((JSON.parse(reply.body) as { reason: string }).reason, /ENOTFOUND/);
  });
});

void describe('the SSRF / DNS-rebinding guard', () => {
  for (const host of Object.keys(HOSTILE_DNS)) {
    void test(`${host} -> ${HOSTILE_DNS[host]!.join(', ')} is refused with 403 upstream_address_not_allowed`, async () => {
      const reply = await fx.https(host, { path: '/latest/meta-data/' });
      assert.equal(reply.status, 403, reply.body);
      assert.equal(reply.headers['x-airlock-deny'], 'upstream_address_not_allowed');
      const body = JSON.parse(reply.body) as { code: string; fix: string };
      assert.equal(body.code, 'upstream_address_not_allowed');
      assert.match(body.fix, /upstream_hosts/);
    });
  }

  void test('an IP literal Host in internal space is refused even when the allowlist names it', async () => {
    const local = await startProxyFixture({
      allowlist: { domains: ['127.0.0.1', '169.254.169.254'] },
      upstream: { resolve: () => Promise.reject(new Error('literals need no DNS')) },
    });
    try {
      for (const host of ['127.0.0.1', '169.254.169.254']) {
        const reply = await local.http(host, { path: '/' });
        assert.equal(reply.status, 403);
        assert.equal(reply.headers['x-airlock-deny'], 'upstream_address_not_allowed');
      }
    } finally {
      await local.close();
    }
  });

  void test('an explicit upstream_hosts mapping lifts the guard for exactly that name', async () => {
    const reply = await fx.https('mapped-private.test', { path: '/ok' });
    assert.equal(reply.status, 200);
    assert.ok(!resolved.includes('mapped-private.test'), 'a mapped name is never resolved');
  });
});
