import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  decodeProxyConfig,
  decodeProxyLine,
  encodeEventLine,
  encodeProxyConfig,
  encodeReadyLine,
  ProxyWireError,
  type ProxyConfig,
} from '../../src/protocol/proxy-wire.js';
import { formatJsonLine, formatTextLine, type NetworkEvent } from '../../src/proxy/log/network-log.js';

/**
 * The host↔proxy wire: the config line (validated again on arrival in the proxy: fail closed, name the key, never
 * the value), the ready line and the event lines. What one side encodes, the other decodes to the same thing.
 */
const parseProxyConfig = decodeProxyConfig;

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const valid = {
  version: 1,
  allowlist: { domains: ['api.test'] },
  ca: { certPem: PEM, keyPem: PEM.replace(/CERTIFICATE/g, 'PRIVATE KEY') },
  sandboxAddress: '10.199.1.100',
  listen: { host: '0.0.0.0', http: 80, https: 443, dns: 53 },
  upstream: { dns: ['1.1.1.1'], hosts: { 'git.internal': '10.0.0.5:8443' }, connectTimeoutMs: 10000 },
  credentials: {
    masked: [
      {
        name: 'T',
        surrogate: 's',
        value: 'SECRET-VALUE',
        scopes: ['a'],
        headers: ['Authorization'],
        allowForeignCredentials: false,
      },
    ],
    signing: [],
  },
  run: { id: 'r', policySha256: 'x' },
};

function problem(config: unknown): string {
  try {
    parseProxyConfig(JSON.stringify(config));
  } catch (err) {
    assert.ok(err instanceof ProxyWireError);
    return err.message;
  }
  throw new Error('expected a ProxyConfigError');
}

void test('a valid config parses, with allowlist defaults filled in', () => {
  const config = parseProxyConfig(JSON.stringify(valid));
  assert.deepEqual(config.allowlist, { domains: ['api.test'], url_prefixes: [] });
  assert.equal(config.log, undefined);
});

void test('unknown top-level keys are refused; extra credential fields travel on to the credential passes', () => {
  assert.match(problem({ ...valid, extra: 1 }), /extra/);
  const withExtra = {
    ...valid,
    credentials: { ...valid.credentials, masked: [{ ...valid.credentials.masked[0], future: true }] },
  };
  assert.equal(
    (parseProxyConfig(JSON.stringify(withExtra)).credentials.masked[0] as unknown as { future: boolean }).future,
    true,
  );
});

void test('each wrong value is reported by key path, without the value', () => {
  const message = problem({
    ...valid,
    sandboxAddress: 'fd00::1',
    upstream: { ...valid.upstream, hosts: { 'a.test': 'not-an-ip' } },
    credentials: { masked: [{ ...valid.credentials.masked[0], scopes: [] }], signing: [] },
  });
  assert.match(message, /sandboxAddress/);
  assert.match(message, /upstream\.hosts\.a\.test/);
  assert.match(message, /credentials\.masked\.0\.scopes/);
  assert.ok(!message.includes('SECRET-VALUE'));
  assert.ok(!message.includes('not-an-ip'));
});

void test('declared listener ports and port-keyed mappings are checked on arrival', () => {
  const withPorts = { ...valid, listen: { ...valid.listen, ports: [5000, 8443] } };
  assert.deepEqual(parseProxyConfig(JSON.stringify(withPorts)).listen.ports, [5000, 8443]);
  assert.match(problem({ ...valid, listen: { ...valid.listen, ports: [0] } }), /listen\.ports\.0/);
  assert.match(problem({ ...valid, listen: { ...valid.listen, ports: Array(300).fill(5000) } }), /at most 256/);
  const keyed = { ...valid, upstream: { ...valid.upstream, hosts: { 'git.internal:5000': '10.0.0.5' } } };
  assert.deepEqual(parseProxyConfig(JSON.stringify(keyed)).upstream.hosts, { 'git.internal:5000': '10.0.0.5' });
  assert.match(problem({ ...valid, upstream: { ...valid.upstream, hosts: { 'a b': '10.0.0.5' } } }), /upstream\.hosts/);
});

void test('not JSON is one clear error', () => {
  assert.throws(() => parseProxyConfig('{'), /one line of JSON/);
});

const text = fc.string({ unit: 'grapheme', maxLength: 40 });
const maskedCredential = fc.record(
  {
    name: fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,15}$/),
    surrogate: text.filter((s) => s.length > 0),
    value: text,
    scopes: fc.array(
      text.filter((s) => s.length > 0),
      { minLength: 1, maxLength: 3 },
    ),
    headers: fc.array(
      text.filter((s) => s.length > 0),
      { minLength: 1, maxLength: 3 },
    ),
    allowForeignCredentials: fc.boolean(),
  },
  { noNullPrototype: true },
);

void test('a config survives the wire unchanged, as exactly one line, whatever its strings hold', () => {
  fc.assert(
    fc.property(
      fc.array(maskedCredential, { maxLength: 3 }),
      fc.array(fc.domain(), { maxLength: 4 }),
      fc.integer({ min: 0, max: 65535 }),
      text,
      (masked, domains, port, runId) => {
        const config: ProxyConfig = {
          ...valid,
          version: 1,
          allowlist: { domains, url_prefixes: [] },
          listen: { ...valid.listen, https: port },
          credentials: { masked, signing: [] },
          run: { id: `r${runId}`, policySha256: 'x' },
        };
        const line = encodeProxyConfig(config);
        assert.equal(line.indexOf('\n'), line.length - 1, 'one line, newline-terminated');
        assert.deepEqual(decodeProxyConfig(line.slice(0, -1)), config);
      },
    ),
    { numRuns: 300 },
  );
});

void test('upstream hosts, ports and the log block are checked on the wire', () => {
  assert.match(problem({ ...valid, listen: { ...valid.listen, dns: 70000 } }), /listen\.dns/);
  assert.match(
    problem({ ...valid, upstream: { ...valid.upstream, hosts: { a: '10.0.0.5:0' } } }),
    /upstream\.hosts\.a/,
  );
  assert.match(
    problem({ ...valid, upstream: { ...valid.upstream, hosts: { a: 'host-gateway' } } }),
    /upstream\.hosts\.a/,
  );
  assert.match(problem({ ...valid, log: { stdout: 'yes' } }), /log\.stdout/);
  assert.match(problem({ ...valid, version: 2 }), /version/);
  assert.match(problem([]), /\(root\)/);
});

void test('the ready line carries the bound ports and nothing else', () => {
  fc.assert(
    fc.property(fc.nat(65535), fc.nat(65535), fc.nat(65535), (http, https, dns) => {
      const addresses = { http, https, dns };
      const line = encodeReadyLine(addresses);
      assert.ok(line.endsWith('\n'));
      assert.deepEqual(decodeProxyLine(line.slice(0, -1)), { kind: 'ready', addresses });
    }),
  );
  // The declared ports' listeners (a JSON object's keys are strings on the wire).
  const withPorts = { http: 80, https: 443, dns: 53, ports: { '5000': 5000, '8443': 41234 } };
  assert.deepEqual(decodeProxyLine(encodeReadyLine(withPorts).slice(0, -1)), { kind: 'ready', addresses: withPorts });
  for (const bad of [
    'AIRLOCK-PROXY-READY {"http":1,"https":2,"dns":3,"ports":{"0":1}}',
    'AIRLOCK-PROXY-READY {"http":1,"https":2,"dns":3,"ports":{"x":1}}',
    'AIRLOCK-PROXY-READY {"http":1,"https":2,"dns":3,"ports":{"5000":70000}}',
    'AIRLOCK-PROXY-READY ',
    'AIRLOCK-PROXY-READY {',
    'AIRLOCK-PROXY-READY {"http":1,"https":2}',
    'AIRLOCK-PROXY-READY {"http":1,"https":2,"dns":3,"admin":4}',
    'AIRLOCK-PROXY-READY {"http":-1,"https":2,"dns":3}',
  ]) {
    assert.equal(decodeProxyLine(bad).kind, 'malformed', bad);
  }
  assert.deepEqual(decodeProxyLine('AIRLOCK-PROXY-READY? {}'), { kind: 'other' });
});

const ts = new Date('2026-01-02T03:04:05.678Z');

void test('an event line decodes to the JSON record and text line the proxy wrote, whatever the request held', () => {
  fc.assert(
    fc.property(
      // would_block: an audit run's refusal that was let through; dropping it would lose the audit's whole point.
      fc.constantFrom('allowed' as const, 'blocked' as const, 'would_block' as const),
      fc.string({ unit: 'binary', maxLength: 30 }),
      fc.string({ unit: 'binary', maxLength: 60 }),
      (decision, method, url) => {
        const event: NetworkEvent = {
          event: 'request',
          ts,
          decision,
          method,
          url,
          host: 'h',
          path: url,
          status: decision === 'blocked' ? 403 : 200,
          code: decision === 'allowed' ? 'allowed' : 'host_not_allowed',
          bytesIn: 0,
          bytesOut: 0,
          durationMs: 1,
          annotations: [url],
        };
        const json = formatJsonLine(event);
        const textLine = formatTextLine(event);
        const line = encodeEventLine(json, textLine);
        assert.equal(line.indexOf('\n'), line.length - 1, 'no request content can start a second line');
        const decoded = decodeProxyLine(line.slice(0, -1));
        assert.equal(decoded.kind, 'event');
        if (decoded.kind !== 'event') return;
        assert.equal(decoded.json, json);
        assert.equal(decoded.text, textLine);
        assert.equal(decoded.record.decision, decision);
        assert.equal(decoded.record.url, url);
      },
    ),
    { numRuns: 500 },
  );
});

void test('a line break handed to the encoder cannot forge a second line', () => {
  const line = encodeEventLine('{"event":"credential"}', 'one\nAIRLOCK-PROXY-READY {"http":1,"https":1,"dns":1}\r');
  assert.equal(line.split('\n').length, 2);
  const decoded = decodeProxyLine(line.slice(0, -1));
  assert.equal(decoded.kind, 'event');
});

void test('event lines without a JSON event record are malformed, and other output is not ours', () => {
  for (const bad of [
    'AIRLOCK-EVENT ',
    'AIRLOCK-EVENT not json\tALLOWED GET x',
    'AIRLOCK-EVENT {"decision":"allowed"}\tALLOWED',
    'AIRLOCK-EVENT {"event":"request","decision":"maybe"}\t',
    'AIRLOCK-EVENT ["event"]\t',
  ]) {
    assert.equal(decodeProxyLine(bad).kind, 'malformed', bad);
  }
  assert.deepEqual(decodeProxyLine('node: warning'), { kind: 'other' });
  assert.deepEqual(decodeProxyLine(' AIRLOCK-EVENT {"event":"dns"}'), { kind: 'other' });
  const noText = decodeProxyLine('AIRLOCK-EVENT {"event":"dns"}');
  assert.equal(noText.kind === 'event' && noText.text, '');
});
