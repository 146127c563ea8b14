import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import * as x509 from '@peculiar/x509';
import { generateRunCa, type RunCa } from '../../src/cli/session/ca.js';
import {
  InvalidServernameError,
  createLeafIssuer,
  leafNameFor,
  wildcardNameFor,
} from '../../src/proxy/tls/leaf-certs.js';
import { handshakeInMemory, makeTestPki } from '../helpers/tls-fixtures.js';

const ca: RunCa = await generateRunCa();
const caCert = new X509Certificate(ca.certPem);

async function presentedLeaf(issuerServername: string, clientHost: string, trust = ca.certPem) {
  const issuer = createLeafIssuer(ca);
  const context = await issuer.secureContextFor(issuerServername);
  return handshakeInMemory(context, { ca: trust, host: clientHost });
}

void test('a TLS client trusting only the run CA accepts the leaf for the host it was minted for', async () => {
  const { error, peerCertificate } = await presentedLeaf('api.example.com', 'api.example.com');
  assert.equal(error, null);
  const leaf = new X509Certificate(peerCertificate!.raw);
  assert.ok(leaf.verify(caCert.publicKey), 'signed by the CA key');
  assert.ok(leaf.checkIssued(caCert));
  assert.equal(leaf.checkHost('api.example.com'), 'api.example.com');
  assert.equal(leaf.subjectAltName, 'DNS:api.example.com');
  assert.equal(leaf.ca, false);
  assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'serverAuth only');
  // The chain on the wire carries the CA, so clients that want the full path get it.
  assert.equal(peerCertificate!.issuerCertificate.fingerprint256, caCert.fingerprint256);
});

void test('the leaf is valid from an hour ago for one day', async () => {
  const { peerCertificate } = await presentedLeaf('example.org', 'example.org');
  const leaf = new X509Certificate(peerCertificate!.raw);
  const from = Date.parse(leaf.validFrom);
  const to = Date.parse(leaf.validTo);
  const hour = 3_600_000;
  assert.ok(Math.abs(Date.now() - hour - from) < 5_000, leaf.validFrom);
  assert.equal(to - from, 25 * hour);
});

void test('an IP literal gets an iPAddress SAN, v4 and v6', async () => {
  for (const [servername, host, san] of [
    ['10.1.2.3', '10.1.2.3', 'IP Address:10.1.2.3'],
    ['2001:db8::1', '2001:db8::1', 'IP Address:2001:DB8:0:0:0:0:0:1'],
    ['[::1]', '::1', 'IP Address:0:0:0:0:0:0:0:1'],
  ] as const) {
    const { error, peerCertificate } = await presentedLeaf(servername, host);
    assert.equal(error, null, servername);
    const leaf = new X509Certificate(peerCertificate!.raw);
    assert.equal(leaf.subjectAltName, san);
    assert.equal(leaf.checkIP(host), host);
  }
});

void test('a leaf for one host is refused by a client that asked for another', async () => {
  const { error } = await presentedLeaf('allowed.example.com', 'evil.example.com');
  assert.ok(error);
  assert.equal(error.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
  // Nor does a leaf for a name stand in for its subdomains.
  const sub = await presentedLeaf('example.com', 'www.example.com');
  assert.equal(sub.error?.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
});

void test('a client that does not trust the run CA refuses the leaf', async () => {
  const other = await makeTestPki(['example.com']);
  const { error } = await presentedLeaf('example.com', 'example.com', other.caPem);
  assert.ok(error);
  assert.match(String(error.code), /UNABLE_TO_GET_ISSUER_CERT|SELF_SIGNED|UNABLE_TO_VERIFY/);
});

void test('every leaf carries the same leaf key, but its own serial', async () => {
  const issuer = createLeafIssuer(ca);
  const leaves = [];
  for (const host of ['a.test', 'b.test', 'c.test']) {
    const { peerCertificate } = await handshakeInMemory(await issuer.secureContextFor(host), { ca: ca.certPem, host });
    leaves.push(new X509Certificate(peerCertificate!.raw));
  }
  const spki = leaves.map((l) => l.publicKey.export({ type: 'spki', format: 'der' }).toString('hex'));
  assert.equal(new Set(spki).size, 1);
  assert.equal(new Set(leaves.map((l) => l.serialNumber)).size, 3);
  assert.notEqual(spki[0], caCert.publicKey.export({ type: 'spki', format: 'der' }).toString('hex'));
});

void test('case and a trailing dot name the same host: one leaf, one cache entry', async () => {
  const issuer = createLeafIssuer(ca);
  const first = await issuer.secureContextFor('Api.Example.COM');
  const second = await issuer.secureContextFor('api.example.com.');
  assert.equal(first, second);
  assert.equal(issuer.minted, 1);
  assert.equal(issuer.size, 1);
  const { error, peerCertificate } = await handshakeInMemory(first, { ca: ca.certPem, host: 'api.example.com' });
  assert.equal(error, null);
  assert.equal(new X509Certificate(peerCertificate!.raw).subjectAltName, 'DNS:api.example.com');
});

void test('the default cache holds 1000 hosts and no more', async () => {
  const issuer = createLeafIssuer(ca);
  for (let i = 0; i < 1010; i++) await issuer.secureContextFor(`h${i}.bulk.test`);
  assert.equal(issuer.minted, 1010);
  assert.equal(issuer.size, 1000);
});

void test('the cache evicts the least recently used host', async () => {
  const issuer = createLeafIssuer(ca, { cacheSize: 3 });
  const a = await issuer.secureContextFor('a.test');
  await issuer.secureContextFor('b.test');
  await issuer.secureContextFor('c.test');
  assert.equal(await issuer.secureContextFor('a.test'), a, 'a is a hit and becomes most recent');
  await issuer.secureContextFor('d.test'); // evicts b, the least recently used
  assert.equal(issuer.size, 3);
  assert.equal(issuer.minted, 4);
  assert.equal(await issuer.secureContextFor('a.test'), a);
  assert.equal(await issuer.secureContextFor('c.test').then(() => issuer.minted), 4, 'c is still cached');
  await issuer.secureContextFor('b.test');
  assert.equal(issuer.minted, 5, 'b had been evicted and is minted again');
  assert.equal(issuer.size, 3);
});

void test('concurrent requests for one host share a single mint', async () => {
  const issuer = createLeafIssuer(ca);
  const contexts = await Promise.all(Array.from({ length: 50 }, () => issuer.secureContextFor('busy.example.com')));
  assert.equal(new Set(contexts).size, 1);
  assert.equal(issuer.minted, 1);
  const many = await Promise.all(Array.from({ length: 40 }, (_, i) => issuer.secureContextFor(`p${i % 8}.test`)));
  assert.equal(new Set(many).size, 8);
  assert.equal(issuer.minted, 9);
});

void test('a cached leaf is replaced before it can expire', async () => {
  let clock = Date.parse('2030-01-01T00:00:00Z');
  const issuer = createLeafIssuer(ca, { now: () => new Date(clock) });
  const first = await issuer.secureContextFor('long.run.test');
  clock += 11 * 3_600_000;
  assert.equal(await issuer.secureContextFor('long.run.test'), first);
  clock += 2 * 3_600_000;
  const second = await issuer.secureContextFor('long.run.test');
  assert.notEqual(second, first);
  assert.equal(issuer.minted, 2);
  assert.equal(issuer.size, 1);
});

void test('names that cannot be a certificate subject are rejected without minting', async () => {
  const issuer = createLeafIssuer(ca);
  const bad = [
    '',
    '.',
    '..',
    'a..b',
    'example.com:443',
    '*.example.com',
    'exa mple.com',
    ' example.com',
    'example.com\0.evil.test',
    '-lead.example.com',
    'trail-.example.com',
    `${'a'.repeat(64)}.example.com`,
    `${'a.'.repeat(127)}com`,
    '1.2.3',
    '256.1.1.1',
    '[::1',
    'fe80::1%eth0',
    '[10.0.0.1]',
    'ex/ample.com',
    'exämple.com',
    '\u212Aelvin.example.com',
    'x'.repeat(300),
  ];
  for (const name of bad) {
    assert.equal(leafNameFor(name), null, JSON.stringify(name));
    await assert.rejects(issuer.secureContextFor(name), InvalidServernameError, JSON.stringify(name));
  }
  assert.equal(issuer.minted, 0);
  assert.equal(issuer.size, 0);
});

void test('a long but valid name is carried by the SAN alone', async () => {
  const host = `${'l'.repeat(63)}.${'m'.repeat(63)}.example.com`;
  const { error, peerCertificate } = await presentedLeaf(host, host);
  assert.equal(error, null);
  const leaf = new X509Certificate(peerCertificate!.raw);
  assert.equal(leaf.subjectAltName, `DNS:${host}`);
  assert.equal(leaf.subject, 'O=airlock');
});

void test('a CA key that does not belong to the CA certificate is refused at creation', async () => {
  const other = await generateRunCa();
  assert.throws(() => createLeafIssuer({ certPem: ca.certPem, keyPem: other.keyPem }), /does not belong/);
});

void test('a certificate that is not a CA is refused as the issuer', async () => {
  const pki = await makeTestPki(['example.com']);
  assert.throws(() => createLeafIssuer({ certPem: pki.certPem, keyPem: pki.keyPem }), /not a certificate authority/);
});

void test('an RSA CA can issue leaves too', async () => {
  x509.cryptoProvider.set(crypto);
  const alg = {
    name: 'RSASSA-PKCS1-v1_5',
    hash: 'SHA-256',
    publicExponent: new Uint8Array([1, 0, 1]),
    modulusLength: 2048,
  };
  const keys = await crypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=rsa test CA',
    keys,
    signingAlgorithm: alg,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    extensions: [new x509.BasicConstraintsExtension(true, 0, true)],
  });
  const rsaCa = {
    certPem: cert.toString('pem'),
    keyPem: x509.PemConverter.encode(await crypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY'),
  };
  const issuer = createLeafIssuer(rsaCa);
  const { error } = await handshakeInMemory(await issuer.secureContextFor('rsa.test'), {
    ca: rsaCa.certPem,
    host: 'rsa.test',
  });
  assert.equal(error, null);
});

void test('a `*.parent` leaf, minted up front, serves every single-label child; deeper names get their own', async () => {
  const issuer = createLeafIssuer(ca, { wildcardParents: ['svc.example'] });
  await issuer.mintWildcards();
  assert.equal(issuer.minted, 1);
  const a = await issuer.secureContextFor('a.svc.example');
  assert.equal(await issuer.secureContextFor('B.svc.example.'), a);
  assert.equal(issuer.minted, 1, 'no signature for a first request to a child');
  for (const host of ['a.svc.example', 'b.svc.example']) {
    const { error, peerCertificate } = await handshakeInMemory(a, { ca: ca.certPem, host });
    assert.equal(error, null, host);
    assert.equal(new X509Certificate(peerCertificate!.raw).subjectAltName, 'DNS:*.svc.example');
  }
  // The wildcard must never be presented where a client would reject it.
  for (const host of ['x.y.svc.example', 'svc.example', 'xn--bcher-kva.svc.example', '_dmarc.svc.example']) {
    const { error, peerCertificate } = await handshakeInMemory(await issuer.secureContextFor(host), {
      ca: ca.certPem,
      host,
    });
    assert.equal(error, null, host);
    assert.equal(new X509Certificate(peerCertificate!.raw).subjectAltName, `DNS:${host}`);
  }
  assert.equal(issuer.minted, 5);
});

void test('an exact leaf already cached wins over the wildcard; a concurrent first use shares the up-front mint', async () => {
  const issuer = createLeafIssuer(ca, { wildcardParents: ['svc.example'] });
  const [, first] = await Promise.all([issuer.mintWildcards(), issuer.secureContextFor('c.svc.example')]);
  assert.equal(issuer.minted, 1, 'one signature for both');
  assert.equal(await issuer.secureContextFor('d.svc.example'), first);
  assert.equal(wildcardNameFor('a.svc.example', new Set(['svc.example'])), '*.svc.example');
  assert.equal(wildcardNameFor('a-b.svc.example', new Set(['svc.example'])), '*.svc.example');
  for (const name of ['svc.example', 'a.b.svc.example', '-a.svc.example', 'xn--x.svc.example', 'a_b.svc.example']) {
    assert.equal(wildcardNameFor(name, new Set(['svc.example'])), null, name);
  }
});
