import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseProxyConfig, ProxyConfigError } from '../../src/proxy/config.js';

/** ProxyConfig validation on arrival in the proxy: fail closed, name the key, never the value. */

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
    assert.ok(err instanceof ProxyConfigError);
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
