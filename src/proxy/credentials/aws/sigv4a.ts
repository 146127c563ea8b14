import { createECDH, createHmac, createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

/**
 * SigV4A (ECDSA P-256) as AWS computes it (aws-c-auth source/key_derivation.c and aws_signing.c), fixing Airut's
 * deviations (docs/aws-signing.md#deliberate-differences-from-airut, the SigV4A row): the KDF's fixed input carries the 32-bit counter prefix and
 * the 256-bit length suffix, the string to sign is hashed once (ECDSA-SHA256 of the string itself), and the
 * signature is DER, hex-encoded.
 */

export const SIGV4A_ALGORITHM = 'AWS4-ECDSA-P256-SHA256';

const LABEL = Buffer.from(SIGV4A_ALGORITHM, 'utf8');
/** Order of the P-256 group; a derived scalar must lie in [1, n-1]. */
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

export interface SigV4AKeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** Big-endian 32-byte scalar, kept for tests against AWS's derivation vector. */
  d: Buffer;
  x: Buffer;
  y: Buffer;
}

function fixedInput(accessKeyId: string, counter: number): Buffer {
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(1);
  const suffix = Buffer.alloc(4);
  suffix.writeUInt32BE(256);
  return Buffer.concat([
    prefix,
    LABEL,
    Buffer.from([0]),
    Buffer.from(accessKeyId, 'utf8'),
    Buffer.from([counter]),
    suffix,
  ]);
}

function b64url(buf: Buffer): string {
  return buf.toString('base64url');
}

/** NIST SP 800-108 counter-mode KDF, retried with the next counter until the candidate is at most n-2. */
export function deriveSigV4AKey(accessKeyId: string, secretAccessKey: string): SigV4AKeyPair {
  const kdfKey = Buffer.from('AWS4A' + secretAccessKey, 'utf8');
  for (let counter = 1; counter <= 254; counter++) {
    const k0 = createHmac('sha256', kdfKey).update(fixedInput(accessKeyId, counter)).digest();
    const c = BigInt('0x' + k0.toString('hex'));
    if (c > P256_N - 2n) continue;
    const d = Buffer.from((c + 1n).toString(16).padStart(64, '0'), 'hex');
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(d);
    const point = ecdh.getPublicKey(); // 0x04 ‖ x ‖ y
    const x = point.subarray(1, 33);
    const y = point.subarray(33, 65);
    const jwk = { kty: 'EC', crv: 'P-256', x: b64url(x), y: b64url(y) };
    return {
      privateKey: createPrivateKey({ key: { ...jwk, d: b64url(d) }, format: 'jwk' }),
      publicKey: createPublicKey({ key: jwk, format: 'jwk' }),
      d,
      x,
      y,
    };
  }
  // Unreachable in practice: each counter fails with probability ~2^-32.
  throw new Error('SigV4A key derivation exhausted its counter');
}

export function sigv4aPublicKeyFromXY(xHex: string, yHex: string): KeyObject {
  const jwk = { kty: 'EC', crv: 'P-256', x: b64url(Buffer.from(xHex, 'hex')), y: b64url(Buffer.from(yHex, 'hex')) };
  return createPublicKey({ key: jwk, format: 'jwk' });
}

/** ECDSA-SHA256 over the string to sign, DER-encoded, as lower-case hex. Randomised: two calls differ. */
export function sigv4aSign(key: SigV4AKeyPair, stringToSign: string): string {
  return sign('sha256', Buffer.from(stringToSign, 'utf8'), { key: key.privateKey, dsaEncoding: 'der' }).toString('hex');
}

export function sigv4aVerify(publicKey: KeyObject, stringToSign: string, signatureHex: string): boolean {
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(signatureHex)) return false;
  try {
    return verify(
      'sha256',
      Buffer.from(stringToSign, 'utf8'),
      { key: publicKey, dsaEncoding: 'der' },
      Buffer.from(signatureHex, 'hex'),
    );
  } catch {
    return false;
  }
}

/** aws-c-auth pads chunk and trailer signatures to 144 characters with `*` so aws-chunked lengths are fixed. */
export const SIGV4A_PADDING = '*';

export function trimSigV4APadding(signature: string): string {
  let end = signature.length;
  while (end > 0 && signature[end - 1] === SIGV4A_PADDING) end--;
  return signature.slice(0, end);
}
