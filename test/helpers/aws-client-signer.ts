import {
  awsUriEncode,
  canonicalHeaders,
  canonicalQuery,
  canonicalRequest,
  canonicalUri,
  parseRawQuery,
  sha256Hex,
} from '../../src/proxy/credentials/aws/canonical.js';
import { SIGV4_ALGORITHM, sigv4Sign, sigv4SigningKey, stringToSign } from '../../src/proxy/credentials/aws/sigv4.js';
import { SIGV4A_ALGORITHM, deriveSigV4AKey, sigv4aSign } from '../../src/proxy/credentials/aws/sigv4a.js';

/**
 * A client-side signer that behaves like aws-c-auth (the signer behind AWS's test suite), used by tests to produce
 * the request a sandboxed client would send: signed with the surrogate key id and the surrogate secret, which the
 * proxy must then re-sign. It follows aws-c-auth's choices (header order, query parameter order, headers it never
 * signs), not the proxy's code paths, so a test compares the proxy against AWS's expected output.
 */

export interface ClientSigningInput {
  version: 'v4' | 'v4a';
  mode: 'header' | 'query';
  method: string;
  /** Raw path and raw query (without `?`) as they go on the wire. */
  path: string;
  query: string;
  headers: Array<[string, string]>;
  body: Buffer;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  region: string;
  service: string;
  amzDate: string;
  normalize: boolean;
  /** S3 signs the path as it is; everything else encodes it again. */
  doubleEncode: boolean;
  /** Add and sign x-amz-content-sha256 (header mode). */
  signBody: boolean;
  /** Send the session token without signing it (AWS's omit_session_token). */
  omitSessionToken: boolean;
  expiresSeconds: number;
  /** The payload hash to declare instead of the body's (UNSIGNED-PAYLOAD, STREAMING-…). */
  payloadHash?: string;
}

export interface ClientSignedRequest {
  method: string;
  target: string;
  headers: Array<[string, string]>;
  signature: string;
  canonicalRequest: string;
  stringToSign: string;
  scope: string;
}

const NEVER_SIGNED = new Set([
  'authorization',
  'user-agent',
  'x-amzn-trace-id',
  'connection',
  'expect',
  'sec-websocket-key',
  'sec-websocket-protocol',
  'sec-websocket-version',
  'upgrade',
]);

export function clientSign(input: ClientSigningInput): ClientSignedRequest {
  const algorithm = input.version === 'v4' ? SIGV4_ALGORITHM : SIGV4A_ALGORITHM;
  const date8 = input.amzDate.slice(0, 8);
  const scopeParts =
    input.version === 'v4'
      ? [date8, input.region, input.service, 'aws4_request']
      : [date8, input.service, 'aws4_request'];
  const scope = scopeParts.join('/');
  const payloadHash = input.payloadHash ?? sha256Hex(input.body);
  const headers: Array<[string, string]> = [...input.headers];
  const signedExtra: Array<[string, string]> = [];
  const unsignedExtra: Array<[string, string]> = [];
  const queryParams: string[] = input.query === '' ? [] : [input.query];
  /** Sent in place but left out of the canonical query (aws-c-auth's omit_session_token). */
  let unsignedParam: string | null = null;

  if (input.mode === 'header') {
    if (input.sessionToken !== undefined) {
      (input.omitSessionToken ? unsignedExtra : signedExtra).push(['X-Amz-Security-Token', input.sessionToken]);
    }
    signedExtra.push(['X-Amz-Date', input.amzDate]);
    if (input.version === 'v4a') signedExtra.push(['X-Amz-Region-Set', input.region]);
    if (input.signBody || input.payloadHash !== undefined) signedExtra.push(['X-Amz-Content-Sha256', payloadHash]);
  }
  const signedSource = [...headers, ...signedExtra];
  const signedHeaders = [
    ...new Set(signedSource.map(([n]) => n.toLowerCase()).filter((n) => !NEVER_SIGNED.has(n))),
  ].sort();

  if (input.mode === 'query') {
    const enc = (v: string): string => awsUriEncode(v, false);
    queryParams.push(
      `X-Amz-Algorithm=${algorithm}`,
      `X-Amz-Credential=${enc(`${input.accessKeyId}/${scope}`)}`,
      `X-Amz-Date=${input.amzDate}`,
      `X-Amz-SignedHeaders=${enc(signedHeaders.join(';'))}`,
      `X-Amz-Expires=${input.expiresSeconds}`,
    );
    if (input.sessionToken !== undefined) {
      const tokenParam = `X-Amz-Security-Token=${enc(input.sessionToken)}`;
      queryParams.push(tokenParam);
      if (input.omitSessionToken) unsignedParam = tokenParam;
    }
    if (input.version === 'v4a') queryParams.push(`X-Amz-Region-Set=${enc(input.region)}`);
  }

  const creq = canonicalRequest({
    method: input.method,
    uri: canonicalUri(
      input.path,
      input.doubleEncode ? (input.normalize ? 'double-normalized' : 'double') : input.normalize ? 'reencoded' : 'as-is',
    ),
    query: canonicalQuery(parseRawQuery(queryParams.filter((p) => p !== unsignedParam).join('&')), {
      plusAsSpace: false,
    }),
    headers: canonicalHeaders(signedSource, signedHeaders, { sortDuplicates: false }),
    signedHeaders,
    payloadHash,
  });
  const sts = stringToSign(algorithm, input.amzDate, scope, creq);
  const signature =
    input.version === 'v4'
      ? sigv4Sign(sigv4SigningKey(input.secretAccessKey, scopeParts), sts)
      : sigv4aSign(deriveSigV4AKey(input.accessKeyId, input.secretAccessKey), sts);

  let outHeaders = [...signedSource, ...unsignedExtra];
  if (input.mode === 'header') {
    outHeaders.push([
      'Authorization',
      `${algorithm} Credential=${input.accessKeyId}/${scope}, SignedHeaders=${signedHeaders.join(';')}, Signature=${signature}`,
    ]);
  } else {
    queryParams.push(`X-Amz-Signature=${signature}`);
    outHeaders = [...headers];
  }
  const query = queryParams.join('&');
  return {
    method: input.method,
    target: query === '' ? input.path : `${input.path}?${query}`,
    headers: outHeaders,
    signature,
    canonicalRequest: creq,
    stringToSign: sts,
    scope,
  };
}

export interface ChunkedBodyInput {
  version: 'v4' | 'v4a';
  accessKeyId: string;
  secretAccessKey: string;
  amzDate: string;
  scope: string;
  seedSignature: string;
  chunks: Buffer[];
  /** Trailing headers; when given, the body ends in trailer form with x-amz-trailer-signature. */
  trailers?: Array<[string, string]>;
}

/**
 * An aws-chunked body as aws-c-auth frames it: every chunk, then the empty final chunk, signed in a chain from the
 * request's seed signature; SigV4A signatures padded with `*` to 144 characters.
 */
export function clientChunkedBody(input: ChunkedBodyInput): { body: Buffer; signatures: string[] } {
  const prefix = input.version === 'v4' ? 'AWS4-HMAC-SHA256' : 'AWS4-ECDSA-P256-SHA256';
  const scopeParts = input.scope.split('/');
  const pair = input.version === 'v4a' ? deriveSigV4AKey(input.accessKeyId, input.secretAccessKey) : null;
  const sign = (sts: string): string =>
    pair ? sigv4aSign(pair, sts) : sigv4Sign(sigv4SigningKey(input.secretAccessKey, scopeParts), sts);
  const pad = (sig: string): string => (pair ? sig.padEnd(144, '*') : sig);
  const empty = sha256Hex('');
  let previous = input.seedSignature;
  const parts: Buffer[] = [];
  const signatures: string[] = [];
  for (const data of [...input.chunks, Buffer.alloc(0)]) {
    const sts = `${prefix}-PAYLOAD\n${input.amzDate}\n${input.scope}\n${previous}\n${empty}\n${sha256Hex(data)}`;
    previous = sign(sts);
    signatures.push(previous);
    parts.push(Buffer.from(`${data.length.toString(16)};chunk-signature=${pad(previous)}\r\n`));
    if (data.length > 0) parts.push(data, Buffer.from('\r\n'));
  }
  if (input.trailers) {
    const block = input.trailers
      .map(([n, v]) => `${n.toLowerCase()}:${v.trim()}\n`)
      .sort()
      .join('');
    const sts = `${prefix}-TRAILER\n${input.amzDate}\n${input.scope}\n${previous}\n${sha256Hex(block)}`;
    previous = sign(sts);
    signatures.push(previous);
    for (const [n, v] of input.trailers) parts.push(Buffer.from(`${n}:${v}\r\n`));
    parts.push(Buffer.from(`x-amz-trailer-signature:${pad(previous)}\r\n`));
  }
  parts.push(Buffer.from('\r\n'));
  return { body: Buffer.concat(parts), signatures };
}

/** An S3 GET over UNSIGNED-PAYLOAD, v4, empty query, as SDKs send downloads: the signing input with the rest filled in. */
export function s3GetInput(
  input: Pick<ClientSigningInput, 'mode' | 'path' | 'headers' | 'accessKeyId' | 'secretAccessKey' | 'amzDate'> &
    Partial<ClientSigningInput>,
): ClientSigningInput {
  return {
    version: 'v4',
    method: 'GET',
    query: '',
    body: Buffer.alloc(0),
    region: 'us-east-1',
    service: 's3',
    normalize: false,
    doubleEncode: false,
    signBody: false,
    omitSessionToken: false,
    expiresSeconds: 300,
    payloadHash: 'UNSIGNED-PAYLOAD',
    ...input,
  };
}
