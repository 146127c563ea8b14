import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { createCredentialProcessor } from '../../src/proxy/credentials/index.js';
import { formatJsonLine, formatTextLine, type RequestEvent } from '../../src/proxy/log/network-log.js';
import { headerValues } from '../helpers/sandbox-fixture.js';
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
 * Audit mode on the real proxy over real sockets: what the allowlist refuses for policy reasons reaches the upstream
 * and is logged `would_block` with its deny code; what would leak or escape is refused exactly as without audit, and
 * never reaches the upstream; credentials follow their scopes, not the audit.
 */

const SURROGATE = 'ghp_SURROGATEsurrogateSURROGATEsurrog01';
const REAL = 'ghp_REALrealREALrealREALrealREALrealRE99';

let fx: ProxyFixture;
let enforcing: ProxyFixture;
let secure: FakeUpstream;
let plain: FakeUpstream;

before(async () => {
  const pki = await makeTestPki(['listed.test', 'unlisted.test', 'secret.test', 'gh.test', 'internal.test']);
  secure = await startHttpsUpstream(pki);
  plain = await startHttpUpstream();
  const hosts = Object.fromEntries(
    ['listed.test', 'unlisted.test', 'secret.test', 'gh.test'].map((h) => [h, `127.0.0.1:${secure.port}`]),
  );
  const options = {
    allowlist: {
      url_prefixes: [
        { host: 'listed.test', path: '/v1/*', methods: ['GET'] },
        { host: 'gh.test', path: '/graphql', methods: ['POST'], graphql: { queries: ['viewer'] } },
      ],
    },
    upstream: {
      caPem: pki.caPem,
      hosts: { ...hosts, 'plain-secret.test': `127.0.0.1:${plain.port}` },
      // internal.test is not mapped: DNS answers a private address, which the guard refuses.
      resolve: (name: string) => Promise.resolve(name === 'internal.test' ? ['10.0.0.5'] : []),
    },
    credentials: createCredentialProcessor({
      masked: [
        {
          name: 'TOKEN',
          surrogate: SURROGATE,
          value: REAL,
          scopes: ['secret.test', 'plain-secret.test'],
          headers: ['Authorization'],
          allowForeignCredentials: false,
        },
      ],
      signing: [],
    }),
  };
  fx = await startProxyFixture({ ...options, audit: true });
  enforcing = await startProxyFixture(options);
});

after(async () => {
  await fx.close();
  await enforcing.close();
  await secure.close();
  await plain.close();
});

function lastRequest(f: ProxyFixture): RequestEvent {
  const events = f.log.events.filter((e): e is RequestEvent => e.event === 'request');
  return events[events.length - 1]!;
}

function authorization(reply: { body: string }): string[] {
  return headerValues((JSON.parse(reply.body) as EchoReport).rawHeaders, 'authorization');
}

void describe('audit mode: policy refusals are let through and logged would_block', () => {
  const cases: Array<{ name: string; host: string; method: string; path: string; code: string; rule: string | null }> =
    [
      {
        name: 'a host not listed',
        host: 'unlisted.test',
        method: 'GET',
        path: '/x?y=1',
        code: 'host_not_allowed',
        rule: null,
      },
      {
        name: 'a path not listed',
        host: 'listed.test',
        method: 'GET',
        path: '/v2/x',
        code: 'path_not_allowed',
        rule: null,
      },
      {
        name: 'a method not listed',
        host: 'listed.test',
        method: 'DELETE',
        path: '/v1/x',
        code: 'method_not_allowed',
        rule: 'url_prefixes[0] listed.test /v1/* methods=GET',
      },
    ];
  for (const c of cases) {
    void test(c.name, async () => {
      const before = secure.received.length;
      const reply = await fx.https(c.host, { method: c.method, path: c.path });
      assert.equal(reply.status, 200, reply.body);
      assert.equal(secure.received.length, before + 1, 'the upstream received it');
      const event = lastRequest(fx);
      assert.equal(event.decision, 'would_block');
      assert.equal(event.code, c.code);
      assert.equal(event.rule ?? null, c.rule);
      assert.match(event.hint ?? '', new RegExp(`^- \\{host: "${c.host}", path: ".*", methods: \\[${c.method}\\]\\}$`));
      assert.equal(formatTextLine(event), `WOULD_BLOCK ${c.method} https://${c.host}${c.path} -> 200 (${c.code})`);
      const json = JSON.parse(formatJsonLine(event)) as Record<string, unknown>;
      assert.equal(json.decision, 'would_block');
      // Without audit the same request is refused and never sent.
      const sent = secure.received.length;
      const refused = await enforcing.https(c.host, { method: c.method, path: c.path });
      assert.equal(refused.status, 403);
      assert.equal(secure.received.length, sent);
    });
  }
  void test('a GraphQL operation the entry does not list', async () => {
    const before = secure.received.length;
    const reply = await fx.https('gh.test', {
      method: 'POST',
      path: '/graphql',
      headers: { Host: 'gh.test', 'Content-Type': 'application/json' },
      body: JSON.stringify({ query: 'mutation { deleteRepository(id: 1) { id } }' }),
    });
    assert.equal(reply.status, 200, reply.body);
    assert.equal(secure.received.length, before + 1);
    const event = lastRequest(fx);
    assert.deepEqual([event.decision, event.code], ['would_block', 'graphql_operation_blocked']);
    assert.equal(event.rule, 'url_prefixes[1] gh.test /graphql methods=POST +graphql filter');
    assert.match(event.hint ?? '', /mutations: \["deleteRepository"\]/);
  });
  void test('an allowed request is logged allowed, as without audit', async () => {
    const reply = await fx.https('listed.test', { path: '/v1/ok' });
    assert.equal(reply.status, 200);
    assert.deepEqual([lastRequest(fx).decision, lastRequest(fx).code], ['allowed', 'allowed']);
  });
});

void describe('audit mode: safety refusals stay, and never reach the upstream', () => {
  async function refusedUnsent(send: () => Promise<string | { status: number }>, code: string): Promise<void> {
    const before = secure.received.length + plain.received.length;
    const outcome = await send();
    if (typeof outcome === 'string') assert.match(outcome, /^HTTP\/1\.1 40[03] /, outcome);
    else assert.ok(outcome.status === 403 || outcome.status === 400, String(outcome.status));
    assert.equal(secure.received.length + plain.received.length, before, `${code} reached the upstream`);
    const event = lastRequest(fx);
    assert.deepEqual([event.decision, event.code], ['blocked', code]);
  }
  void test('CONNECT', () =>
    refusedUnsent(
      () =>
        rawExchange(
          fx.proxy.addresses.http,
          'CONNECT unlisted.test:443 HTTP/1.1\r\nHost: unlisted.test:443\r\n\r\n',
          500,
        ),
      'connect_not_allowed',
    ));
  void test('TRACE', () =>
    refusedUnsent(() => fx.https('unlisted.test', { method: 'TRACE', path: '/' }), 'trace_not_allowed'));
  void test('SNI and Host naming different hosts (domain fronting)', () =>
    refusedUnsent(
      () => fx.https('unlisted.test', { sni: 'listed.test', headers: { Host: 'unlisted.test' } }),
      'host_mismatch',
    ));
  void test('absolute-form target naming another host', () =>
    refusedUnsent(
      () =>
        rawExchange(
          fx.proxy.addresses.http,
          'GET http://unlisted.test/ HTTP/1.1\r\nHost: listed.test\r\nConnection: close\r\n\r\n',
          500,
        ),
      'host_mismatch',
    ));
  void test('path traversal, even percent-encoded', () =>
    refusedUnsent(() => fx.https('unlisted.test', { path: '/a/%2e%2e/%2e%2e/etc/passwd' }), 'invalid_path'));
  void test('a name that resolves into private address space', () =>
    refusedUnsent(() => fx.https('internal.test', { path: '/' }), 'upstream_address_not_allowed'));
  void test('a TLS handshake without SNI is refused during the handshake', async () => {
    const before = secure.received.length;
    const error = await new Promise<string>((resolve) => {
      const socket = tls.connect({
        host: '127.0.0.1',
        port: fx.proxy.addresses.https,
        ca: fx.runCa.certPem,
        servername: '',
      });
      socket.on('secureConnect', () => {
        socket.destroy();
        resolve('connected');
      });
      socket.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
    assert.notEqual(error, 'connected');
    assert.equal(secure.received.length, before);
  });
});

void describe('audit mode: credentials follow their scopes', () => {
  void test('a surrogate sent to a host outside its scopes travels unchanged; the real value never leaves', async () => {
    const reply = await fx.https('unlisted.test', {
      path: '/x',
      headers: { Host: 'unlisted.test', Authorization: `Bearer ${SURROGATE}` },
    });
    assert.equal(reply.status, 200);
    assert.deepEqual(authorization(reply), [`Bearer ${SURROGATE}`]);
    assert.equal(lastRequest(fx).decision, 'would_block');
  });
  void test('plain HTTP to a scoped host never carries the real value', async () => {
    const reply = await fx.http('plain-secret.test', {
      path: '/x',
      headers: { Host: 'plain-secret.test', Authorization: `Bearer ${SURROGATE}` },
    });
    assert.ok(!reply.body.includes(REAL), 'the real value crossed plain HTTP');
    assert.ok(!JSON.stringify(plain.received).includes(REAL));
  });
  void test('no log event carries the real value', () => {
    const all = fx.log.events.map((e) => formatJsonLine(e) + formatTextLine(e)).join('\n');
    assert.ok(!all.includes(REAL));
  });
});
