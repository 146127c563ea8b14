import { percentDecode, type RawQueryParam } from './canonical.js';
import { SIGV4_ALGORITHM } from './sigv4.js';
import { SIGV4A_ALGORITHM } from './sigv4a.js';

/** Where a request carries its AWS signature, parsed: the Authorization header or a presigned query. */

export type SigningAlgorithm = typeof SIGV4_ALGORITHM | typeof SIGV4A_ALGORITHM;

export interface AwsSignature {
  algorithm: SigningAlgorithm;
  accessKeyId: string;
  /** Credential scope after the key id: `date/region/service/aws4_request` (SigV4) or `date/service/aws4_request`. */
  scope: string;
  /** The scope split on `/`, fed to the SigV4 key derivation as it is. */
  scopeParts: string[];
  service: string;
  /** The SigV4 scope's region; SigV4A scopes carry none. */
  region?: string;
  /** Lower-case, in the order the client listed them (the canonical form requires sorted; we keep what was sent). */
  signedHeaders: string[];
  signature: string;
}

const ALGORITHMS: readonly string[] = [SIGV4_ALGORITHM, SIGV4A_ALGORITHM];

function parseCredential(
  algorithm: SigningAlgorithm,
  credential: string,
): Pick<AwsSignature, 'accessKeyId' | 'scope' | 'scopeParts' | 'service' | 'region'> | null {
  const slash = credential.indexOf('/');
  if (slash <= 0) return null;
  const scope = credential.slice(slash + 1);
  const scopeParts = scope.split('/');
  const expected = algorithm === SIGV4A_ALGORITHM ? 3 : 4;
  if (scopeParts.length !== expected || scopeParts[expected - 1] !== 'aws4_request') return null;
  if (scopeParts.some((p) => p === '') || !/^\d{8}$/.test(scopeParts[0]!)) return null;
  return {
    accessKeyId: credential.slice(0, slash),
    scope,
    scopeParts,
    service: scopeParts[expected - 2]!,
    ...(algorithm === SIGV4_ALGORITHM ? { region: scopeParts[1]! } : {}),
  };
}

function parseSignedHeaders(list: string): string[] | null {
  const names = list.split(';').map((n) => n.trim().toLowerCase());
  return names.length > 0 && names.every((n) => n !== '') ? names : null;
}

/**
 * `AWS4-HMAC-SHA256 Credential=AKID/scope, SignedHeaders=a;b, Signature=hex` (or the ECDSA algorithm). Anchored at
 * the start, as Airut does (docs/aws-signing.md#what-is-re-signed); the three parameters may come in any order, as AWS accepts.
 */
export function parseAuthorizationHeader(value: string): AwsSignature | null {
  const match = /^(AWS4-HMAC-SHA256|AWS4-ECDSA-P256-SHA256)[ \t]+(.*)$/s.exec(value.trim());
  if (!match) return null;
  const algorithm = match[1] as SigningAlgorithm;
  const params = new Map<string, string>();
  for (const part of match[2]!.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) return null;
    const name = part.slice(0, eq).trim();
    if (params.has(name)) return null;
    params.set(name, part.slice(eq + 1).trim());
  }
  const credential = params.get('Credential');
  const signedHeaders = params.get('SignedHeaders');
  const signature = params.get('Signature');
  if (credential === undefined || signedHeaders === undefined || signature === undefined) return null;
  if (!/^[0-9a-fA-F]+$/.test(signature)) return null;
  const parsedCredential = parseCredential(algorithm, credential);
  const names = parseSignedHeaders(signedHeaders);
  if (!parsedCredential || !names) return null;
  return { algorithm, ...parsedCredential, signedHeaders: names, signature };
}

export interface PresignedQuery extends AwsSignature {
  /** X-Amz-Date, decoded. */
  amzDate: string;
}

const decode = (raw: string): string => percentDecode(raw).toString('utf8');

/** The X-Amz-* parameters of a presigned URL; a URL missing its credential or signature is not one. */
export function parsePresignedQuery(params: readonly RawQueryParam[]): PresignedQuery | null {
  const first = (name: string): string | undefined => {
    const param = params.find((p) => p.name === name);
    return param === undefined ? undefined : decode(param.value);
  };
  const algorithm = first('X-Amz-Algorithm') ?? SIGV4_ALGORITHM;
  const credential = first('X-Amz-Credential');
  const signature = first('X-Amz-Signature');
  const amzDate = first('X-Amz-Date');
  if (!ALGORITHMS.includes(algorithm) || credential === undefined || signature === undefined) return null;
  if (amzDate === undefined || !/^[0-9a-fA-F]+$/.test(signature)) return null;
  const parsedCredential = parseCredential(algorithm as SigningAlgorithm, credential);
  const names = parseSignedHeaders(first('X-Amz-SignedHeaders') ?? 'host');
  if (!parsedCredential || !names) return null;
  return { algorithm: algorithm as SigningAlgorithm, ...parsedCredential, signedHeaders: names, signature, amzDate };
}
