import { Duplex } from 'node:stream';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';
import { isIPv4, isIPv6 } from '../../src/protocol/policy.js';

/**
 * Throwaway PKI for fake upstream HTTPS servers in tests: a CA the test trusts explicitly and one server
 * certificate for the given names. Deliberately independent of the proxy's own CA and leaf code, so a test that
 * uses both is checking one implementation against another rather than against itself.
 */

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const HOUR = 3_600_000;

export interface TestPki {
  caPem: string;
  certPem: string;
  keyPem: string;
}

function subjectAltName(name: string): x509.JsonGeneralName {
  const bare = name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1) : name;
  return isIPv4(bare) || isIPv6(bare) ? { type: 'ip', value: bare } : { type: 'dns', value: name };
}

function randomSerial(): string {
  return Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(16))).toString('hex');
}

export async function makeTestPki(hostnames: string[]): Promise<TestPki> {
  if (hostnames.length === 0) throw new Error('makeTestPki needs at least one host name');
  const crypto = globalThis.crypto;
  x509.cryptoProvider.set(crypto);
  const now = Date.now();
  const notBefore = new Date(now - HOUR);
  const notAfter = new Date(now + 24 * HOUR);

  const caKeys = await crypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: 'CN=airlock test upstream CA',
    notBefore,
    notAfter,
    signingAlgorithm: EC_P256,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const serverKeys = await crypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const server = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: 'CN=airlock test upstream',
    issuer: ca.subject,
    notBefore,
    notAfter,
    signingAlgorithm: EC_P256,
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.SubjectAlternativeNameExtension(hostnames.map(subjectAltName)),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      await x509.AuthorityKeyIdentifierExtension.create(ca, false),
    ],
  });

  const pkcs8 = await crypto.subtle.exportKey('pkcs8', serverKeys.privateKey);
  return {
    caPem: ca.toString('pem'),
    certPem: server.toString('pem'),
    keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY'),
  };
}

/** Two connected in-memory streams: what one side writes, the other reads. Lets unit tests run real TLS. */
function duplexPair(): [Duplex, Duplex] {
  const sides: Duplex[] = [];
  const make = (peer: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        peer().push(chunk);
        callback();
      },
      final(callback) {
        peer().push(null);
        callback();
      },
    });
  sides.push(
    make(() => sides[1]!),
    make(() => sides[0]!),
  );
  return [sides[0]!, sides[1]!];
}

export interface HandshakeResult {
  /** The error the client saw, or null when it accepted the server. */
  error: NodeJS.ErrnoException | null;
  /** With its issuer chain, as the client received it. */
  peerCertificate: tls.DetailedPeerCertificate | null;
}

/**
 * A full TLS handshake between a server using `secureContext` and a client trusting only `ca`, over memory rather
 * than a socket. The client verifies the chain and the host name exactly as node's https client does.
 */
export async function handshakeInMemory(
  secureContext: tls.SecureContext,
  client: { ca: string; host: string },
): Promise<HandshakeResult> {
  const [serverSide, clientSide] = duplexPair();
  const server = new tls.TLSSocket(serverSide, { isServer: true, secureContext });
  server.on('error', () => {});
  try {
    return await new Promise<HandshakeResult>((resolve) => {
      const socket = tls.connect({
        socket: clientSide,
        ca: client.ca,
        // RFC 6066 forbids an IP literal as SNI; node then checks the IP SAN against `host`.
        servername: isIPv4(client.host) || isIPv6(client.host) ? '' : client.host,
        host: client.host,
      });
      socket.on('secureConnect', () => {
        resolve({ error: null, peerCertificate: socket.getPeerCertificate(true) });
        socket.destroy();
      });
      socket.on('error', (error) => {
        resolve({ error, peerCertificate: null });
        socket.destroy();
      });
    });
  } finally {
    server.destroy();
  }
}
