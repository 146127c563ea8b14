import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, type webcrypto } from 'node:crypto';
import tls from 'node:tls';
import { test } from 'node:test';
import * as x509 from '@peculiar/x509';
import { generateRunCa } from '../../src/cli/session/ca.js';
import { handshakeInMemory } from '../helpers/tls-fixtures.js';

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

void test('the run CA is a P-256 CA certificate restricted to signing leaves', async () => {
  const ca = await generateRunCa();
  const cert = new X509Certificate(ca.certPem);
  assert.equal(cert.ca, true);
  assert.ok(cert.verify(cert.publicKey), 'self-signed');
  assert.ok(cert.checkIssued(cert));
  const key = createPrivateKey(ca.keyPem);
  assert.equal(key.asymmetricKeyType, 'ec');
  assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.ok(cert.checkPrivateKey(key), 'the key belongs to the certificate');
  assert.match(ca.keyPem, /^-----BEGIN PRIVATE KEY-----\n/, 'PKCS#8, not SEC1');

  const parsed = new x509.X509Certificate(ca.certPem);
  const bc = parsed.getExtension(x509.BasicConstraintsExtension);
  assert.ok(bc);
  assert.equal(bc.critical, true);
  assert.equal(bc.ca, true);
  assert.equal(bc.pathLength, 0);
  const ku = parsed.getExtension(x509.KeyUsagesExtension);
  assert.ok(ku);
  assert.equal(ku.critical, true);
  assert.equal(ku.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
  assert.match(cert.subject, /^CN=airlock per-run CA [0-9a-f]{8}$/);
});

void test('the validity runs from an hour before now to two days after', async () => {
  const now = new Date('2031-03-04T05:06:07Z');
  const ca = await generateRunCa({ now, commonName: 'airlock per-run CA fixed' });
  const cert = new X509Certificate(ca.certPem);
  assert.equal(new Date(cert.validFrom).toISOString(), '2031-03-04T04:06:07.000Z');
  assert.equal(new Date(cert.validTo).toISOString(), '2031-03-06T05:06:07.000Z');
  assert.equal(cert.subject, 'CN=airlock per-run CA fixed');
});

void test('a common name cannot smuggle extra subject attributes', async () => {
  const ca = await generateRunCa({ commonName: 'x, O=Evil Corp\nCN=other' });
  const parsed = new x509.X509Certificate(ca.certPem);
  assert.deepEqual(
    parsed.subjectName.toJSON().flatMap((rdn) => Object.keys(rdn)),
    ['CN'],
  );
  assert.deepEqual(parsed.subjectName.getField('CN'), ['x, O=Evil Corp\nCN=other']);
});

void test('every run gets a different key, serial and name', async () => {
  const runs = await Promise.all([generateRunCa(), generateRunCa(), generateRunCa()]);
  const certs = runs.map((r) => new X509Certificate(r.certPem));
  assert.equal(new Set(runs.map((r) => r.keyPem)).size, 3);
  assert.equal(new Set(certs.map((c) => c.serialNumber)).size, 3);
  assert.equal(new Set(certs.map((c) => c.subject)).size, 3);
  for (const c of certs) {
    // 128 random bits; a leading 00 is the DER sign byte, not part of the value.
    const serial = c.serialNumber.replace(/^00/, '');
    assert.ok(serial.length <= 32 && serial.length >= 24, `serial ${serial}`);
  }
});

async function signedBy(
  issuer: x509.X509Certificate,
  issuerKey: webcrypto.CryptoKey,
  subject: string,
  extensions: x509.Extension[],
): Promise<{ cert: x509.X509Certificate; keys: webcrypto.CryptoKeyPair }> {
  const keys = await crypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.create({
    subject,
    issuer: issuer.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    signingAlgorithm: EC_P256,
    publicKey: keys.publicKey,
    signingKey: issuerKey,
    extensions,
  });
  return { cert, keys };
}

async function serve(ca: string, chainPem: string, keyPem: string): Promise<NodeJS.ErrnoException | null> {
  const context = tls.createSecureContext({ cert: chainPem, key: keyPem });
  return (await handshakeInMemory(context, { ca, host: 'leaf.test' })).error;
}

void test('a certificate authority minted under the run CA is refused by a TLS client (pathLen 0)', async () => {
  x509.cryptoProvider.set(crypto);
  const ca = await generateRunCa();
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKey = await crypto.subtle.importKey(
    'pkcs8',
    x509.PemConverter.decodeFirst(ca.keyPem),
    { name: 'ECDSA', namedCurve: 'P-256' },
    false,
    ['sign'],
  );
  const leafExtensions = [
    new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'leaf.test' }]),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
  ];
  const exportKey = async (k: webcrypto.CryptoKey) =>
    x509.PemConverter.encode(await crypto.subtle.exportKey('pkcs8', k), 'PRIVATE KEY');

  // Control: a leaf signed directly by the run CA is accepted, so the refusal below is the constraint at work.
  const direct = await signedBy(caCert, caKey, 'CN=leaf.test', leafExtensions);
  assert.equal(await serve(ca.certPem, direct.cert.toString('pem'), await exportKey(direct.keys.privateKey)), null);

  const intermediate = await signedBy(caCert, caKey, 'CN=rogue intermediate', [
    new x509.BasicConstraintsExtension(true, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
  ]);
  const leaf = await signedBy(intermediate.cert, intermediate.keys.privateKey, 'CN=leaf.test', leafExtensions);
  const chain = leaf.cert.toString('pem') + '\n' + intermediate.cert.toString('pem');
  const err = await serve(ca.certPem, chain, await exportKey(leaf.keys.privateKey));
  assert.ok(err, 'the handshake must fail');
  assert.match(String(err.code ?? err.message), /PATH_LENGTH|pathlen/i);
});
