import { X509Certificate as NodeX509Certificate, createPrivateKey, type webcrypto } from 'node:crypto';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';
import { isIPv4, isIPv6, normalizeHost } from '../../protocol/policy.js';

/**
 * Interception leaves: the certificate the proxy presents to the sandbox for each host it is asked for, signed by
 * the per-run CA. One leaf key serves every leaf (generating a key per host would cost far more than signing), and
 * each host's SecureContext is kept in a bounded LRU so a sandbox that walks many host names cannot grow memory.
 */

export interface CaMaterial {
  certPem: string;
  keyPem: string;
}

export interface LeafIssuer {
  /** The context to present for this SNI name; rejects names that cannot be a certificate subject. */
  secureContextFor(servername: string): Promise<tls.SecureContext>;
  /** Mints the `*.parent` leaf of every wildcard parent now, so no first request waits for one. */
  mintWildcards(): Promise<void>;
  /** Host contexts currently cached. */
  readonly size: number;
  /** Leaves signed since the issuer was created. */
  readonly minted: number;
}

export interface LeafIssuerOptions {
  /** Most host contexts kept; the least recently used is dropped beyond this. Default 1000. */
  cacheSize?: number;
  /** Clock, for tests. */
  now?: () => Date;
  /**
   * DNS suffixes (`github.com`) for which one `*.github.com` leaf serves every single-label child: the allowlist's
   * `*.github.com` patterns, so the first request to a new subdomain does not wait for a signature.
   */
  wildcardParents?: readonly string[];
}

export class InvalidServernameError extends Error {
  readonly code = 'invalid_servername';
  constructor(servername: string) {
    super(`${JSON.stringify(servername.slice(0, 300))} is not a host name or IP literal a certificate can name`);
    this.name = 'InvalidServernameError';
  }
}

const HOUR = 3_600_000;
/** Backdated so a sandbox clock a little behind the proxy's still accepts the leaf. */
const CLOCK_SKEW_MS = HOUR;
const LEAF_LIFETIME_MS = 24 * HOUR;
/** A cached leaf is replaced well before it expires, so a long run never presents an expired one. */
const LEAF_REFRESH_AFTER_MS = 12 * HOUR;
const LEAF_KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
/** RFC 5280 upper bound for a CommonName; longer names are carried by the SAN alone. */
const MAX_COMMON_NAME = 64;

type LeafName = { type: 'dns' | 'ip'; value: string };

/**
 * A label a `*` in a certificate may stand for in every common client: LDH, and not an IDN A-label (OpenSSL and
 * RFC 6125 §6.4.3 refuse to match a wildcard against `xn--`).
 */
const WILDCARD_LABEL = /^(?!xn--)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** The `*.parent` name that covers this DNS name, or null when no wildcard leaf may stand in for it. */
export function wildcardNameFor(name: string, parents: ReadonlySet<string>): string | null {
  const dot = name.indexOf('.');
  if (dot < 0) return null;
  const parent = name.slice(dot + 1);
  return parents.has(parent) && WILDCARD_LABEL.test(name.slice(0, dot)) ? `*.${parent}` : null;
}

/** The certificate name for an SNI value, or null when it is not a plain DNS name or IP literal. */
export function leafNameFor(servername: string): LeafName | null {
  if (typeof servername !== 'string' || servername.length === 0 || servername.length > 255) return null;
  // Checked before lower-casing: 'K' (U+212A KELVIN SIGN) lower-cases to an ASCII 'k'.
  if (!/^[\x21-\x7e]+$/.test(servername)) return null;
  if (servername.startsWith('[') && servername.endsWith(']')) {
    const inner = servername.slice(1, -1).toLowerCase();
    return isIPv6(inner) ? { type: 'ip', value: inner } : null;
  }
  const lower = servername.toLowerCase();
  if (isIPv6(lower)) return { type: 'ip', value: lower };
  // A port, brackets or whitespace means the caller passed a Host header, not an SNI name.
  if (/[\s:[\]]/.test(servername)) return null;
  const host = normalizeHost(servername);
  if (host === null) return null;
  return { type: isIPv4(host) ? 'ip' : 'dns', value: host };
}

function signingAlgorithmFor(ca: x509.X509Certificate): {
  importParams: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams;
  signing: webcrypto.EcdsaParams | webcrypto.Algorithm;
} {
  const alg = ca.publicKey.algorithm as webcrypto.KeyAlgorithm;
  if (alg.name === 'ECDSA') {
    const curve = (alg as webcrypto.EcKeyAlgorithm).namedCurve;
    const hash = curve === 'P-384' ? 'SHA-384' : curve === 'P-521' ? 'SHA-512' : 'SHA-256';
    return { importParams: { name: 'ECDSA', namedCurve: curve }, signing: { name: 'ECDSA', hash } };
  }
  if (alg.name === 'RSASSA-PKCS1-v1_5') {
    return {
      importParams: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
      signing: { name: 'RSASSA-PKCS1-v1_5' },
    };
  }
  throw new Error(`the CA key type ${alg.name} is not supported; use ECDSA or RSA`);
}

function randomSerial(): string {
  return Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(16))).toString('hex');
}

interface CachedContext {
  context: tls.SecureContext;
  mintedAt: number;
}

export function createLeafIssuer(ca: CaMaterial, opts: LeafIssuerOptions = {}): LeafIssuer {
  const cacheSize = opts.cacheSize ?? 1000;
  if (!Number.isInteger(cacheSize) || cacheSize < 1) throw new RangeError('cacheSize must be a positive integer');
  const now = opts.now ?? (() => new Date());
  const wildcardParents = new Set(opts.wildcardParents ?? []);

  // Checked synchronously so a mismatched CA fails at startup, not on the sandbox's first HTTPS request.
  const nodeCaCert = new NodeX509Certificate(ca.certPem);
  if (!nodeCaCert.ca) throw new Error('the CA certificate is not a certificate authority (basicConstraints CA:false)');
  if (!nodeCaCert.checkPrivateKey(createPrivateKey(ca.keyPem))) {
    throw new Error('the CA key does not belong to the CA certificate');
  }
  const caCert = new x509.X509Certificate(ca.certPem);
  const caChainPem = caCert.toString('pem');
  const algorithm = signingAlgorithmFor(caCert);
  const crypto = globalThis.crypto;

  // Imported non-extractable: once this resolves, no code path can read the CA key back out.
  const signingMaterial = (async () => {
    x509.cryptoProvider.set(crypto);
    const caKey = await crypto.subtle.importKey(
      'pkcs8',
      x509.PemConverter.decodeFirst(ca.keyPem),
      algorithm.importParams,
      false,
      ['sign'],
    );
    const leafKeys = await crypto.subtle.generateKey(LEAF_KEY_ALGORITHM, true, ['sign', 'verify']);
    const leafKeyPem = x509.PemConverter.encode(
      await crypto.subtle.exportKey('pkcs8', leafKeys.privateKey),
      'PRIVATE KEY',
    );
    const authorityKeyId = await x509.AuthorityKeyIdentifierExtension.create(caCert, false);
    return { caKey, leafPublicKey: leafKeys.publicKey, leafKeyPem, authorityKeyId };
  })();
  // Surfaced on the first secureContextFor; this only stops an unhandled rejection before then.
  signingMaterial.catch(() => {});

  const cache = new Map<string, CachedContext>();
  const inFlight = new Map<string, Promise<tls.SecureContext>>();
  let minted = 0;

  async function mint(name: LeafName): Promise<tls.SecureContext> {
    const material = await signingMaterial;
    const issuedAt = now().getTime();
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: new x509.Name(name.value.length <= MAX_COMMON_NAME ? [{ CN: [name.value] }] : [{ O: ['airlock'] }]),
      issuer: caCert.subjectName,
      notBefore: new Date(issuedAt - CLOCK_SKEW_MS),
      notAfter: new Date(issuedAt + LEAF_LIFETIME_MS),
      signingAlgorithm: algorithm.signing,
      publicKey: material.leafPublicKey,
      signingKey: material.caKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([name]),
        material.authorityKeyId,
      ],
    });
    minted++;
    const context = tls.createSecureContext({
      key: material.leafKeyPem,
      cert: leaf.toString('pem') + '\n' + caChainPem,
    });
    cache.delete(name.value);
    cache.set(name.value, { context, mintedAt: issuedAt });
    while (cache.size > cacheSize) cache.delete(cache.keys().next().value!);
    return context;
  }

  /** The cached context for this certificate name, the one being minted, or a new one. */
  function contextFor(name: LeafName): Promise<tls.SecureContext> {
    const hit = cache.get(name.value);
    if (hit && now().getTime() - hit.mintedAt < LEAF_REFRESH_AFTER_MS) {
      // Re-insert to mark it most recently used.
      cache.delete(name.value);
      cache.set(name.value, hit);
      return Promise.resolve(hit.context);
    }
    const pending = inFlight.get(name.value);
    if (pending) return pending;
    const minting = mint(name).finally(() => inFlight.delete(name.value));
    inFlight.set(name.value, minting);
    return minting;
  }

  return {
    secureContextFor(servername: string): Promise<tls.SecureContext> {
      const exact = leafNameFor(servername);
      if (exact === null) return Promise.reject(new InvalidServernameError(String(servername)));
      // A leaf minted for the exact name (or listed in the allowlist) wins; else a covering `*.parent` leaf.
      const wildcard =
        exact.type === 'dns' && !cache.has(exact.value) ? wildcardNameFor(exact.value, wildcardParents) : null;
      return contextFor(wildcard === null ? exact : { type: 'dns', value: wildcard });
    },
    async mintWildcards(): Promise<void> {
      await Promise.all([...wildcardParents].map((parent) => contextFor({ type: 'dns', value: `*.${parent}` })));
    },
    get size() {
      return cache.size;
    },
    get minted() {
      return minted;
    },
  };
}
