import { createHmac, timingSafeEqual } from 'node:crypto';
import { sha256Hex } from './canonical.js';

/** SigV4 (HMAC-SHA256) signing: key derivation from the credential scope, and signing a string to sign. */

export const SIGV4_ALGORITHM = 'AWS4-HMAC-SHA256';

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/**
 * The signing key for one credential scope `date/region/service/aws4_request`, taken from the wire rather than
 * rebuilt, so whatever region and service the client signed for are the ones re-signed.
 */
export function sigv4SigningKey(secretAccessKey: string, scope: readonly string[]): Buffer {
  let key: Buffer | string = 'AWS4' + secretAccessKey;
  for (const part of scope) key = hmac(key, part);
  return key as Buffer;
}

export function sigv4Sign(signingKey: Buffer, stringToSign: string): string {
  return hmac(signingKey, stringToSign).toString('hex');
}

export function sigv4Verify(signingKey: Buffer, stringToSign: string, signatureHex: string): boolean {
  const expected = Buffer.from(sigv4Sign(signingKey, stringToSign), 'utf8');
  const given = Buffer.from(signatureHex.toLowerCase(), 'utf8');
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** `ALGORITHM\nX-AMZ-DATE\nSCOPE\nsha256(canonical request)` — the same shape for SigV4 and SigV4A. */
export function stringToSign(algorithm: string, amzDate: string, scope: string, canonicalRequest: string): string {
  return `${algorithm}\n${amzDate}\n${scope}\n${sha256Hex(canonicalRequest)}`;
}
