import type { SigningCredential } from '../../../protocol/proxy-wire.js';
import type { RequestHead } from '../types.js';
import type { AwsSignature } from './authorization.js';
import type { RawQueryParam } from './canonical.js';

/**
 * Where a request carries its AWS signature decides a handful of things around the shared canonicaliser
 * (canonical.ts) and signer (resign.ts): how the signature is found, which payload hash it covers, what of the query
 * it signed, what is rewritten before signing again, and where the new signature goes. Two strategies implement
 * this: header-signed.ts (an `Authorization` header) and presigned.ts (a presigned query).
 * docs/aws-signing.md#what-is-re-signed describes both.
 */

/** A request signed with a known surrogate key id on a host in that credential's scopes. */
export interface DetectedSignature {
  strategy: SigningStrategy;
  signature: AwsSignature;
  /** X-Amz-Date as the client signed it ('' when it sent none). */
  amzDate: string;
  credential: SigningCredential;
}

/** The payload hash the signature covers, as far as the request head tells. */
export type PayloadHashes =
  /** Known without the body: the candidates, most likely first. */
  | { kind: 'known'; hashes: string[] }
  /** The body's SHA-256 is (or may be) signed: the candidates once it is known. */
  | { kind: 'body'; withBodyHash: (bodyHash: string) => string[] };

export interface SigningStrategy {
  /** The client's signature and date in this strategy's place, or null when the request carries none there. */
  find(head: RequestHead, params: readonly RawQueryParam[]): { signature: AwsSignature; amzDate: string } | null;
  /** The payload hash the client signed, or how to learn it from the body. */
  payloadHashes(head: RequestHead, params: readonly RawQueryParam[], signature: AwsSignature): PayloadHashes;
  /** Whether the client's date says "now" (a presigned URL may have been made a while ago). */
  readonly datedNow: boolean;
  /** The ways the client may have treated a session token in the query: signed, or appended after signing. */
  tokenSignedVariants(params: readonly RawQueryParam[]): boolean[];
  /** Whether a query parameter stays out of the canonical query. */
  unsignedParam(name: string, tokenSigned: boolean): boolean;
  /** The query as it will leave, before the new signature: the real credential swapped in where it travels there. */
  outgoingParams(head: RequestHead, detected: DetectedSignature, events: string[]): RawQueryParam[];
  /** Writes the new signature where the client's was. */
  place(
    head: RequestHead,
    detected: DetectedSignature,
    outgoing: { headers: Array<[string, string]>; params: RawQueryParam[] },
    newSignature: string,
    events: string[],
  ): { headers: Array<[string, string]>; target: string };
  /** Whether an aws-chunked body may follow, its chunks chained from the new signature. */
  readonly streamsChunks: boolean;
}

export function headerValues(headers: ReadonlyArray<readonly [string, string]>, name: string): string[] {
  return headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
}

/**
 * Only `Content-Length: 0` proves there is no body: the HTTP layer strips Transfer-Encoding (hop by hop) before the
 * credential pass, so a missing length may still mean a chunked body. Reading an absent body costs nothing.
 */
export function bodyIsEmpty(head: RequestHead): boolean {
  const length = headerValues(head.headers, 'content-length');
  const encoding = headerValues(head.headers, 'transfer-encoding');
  return encoding.length === 0 && length.length > 0 && length.every((v) => v.trim() === '0');
}

export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
