import { createHash } from 'node:crypto';
import https from 'node:https';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  EMPTY_SHA256,
  canonicalHeaders,
  canonicalQuery,
  canonicalRequest,
  canonicalUri,
  parseRawQuery,
  percentDecode,
  sha256Hex,
  splitTarget,
} from '../../src/proxy/credentials/aws/canonical.js';
import {
  parseAuthorizationHeader,
  parsePresignedQuery,
  type AwsSignature,
} from '../../src/proxy/credentials/aws/authorization.js';
import { SIGV4_ALGORITHM, sigv4SigningKey, sigv4Verify, stringToSign } from '../../src/proxy/credentials/aws/sigv4.js';
import { deriveSigV4AKey, sigv4aVerify, trimSigV4APadding } from '../../src/proxy/credentials/aws/sigv4a.js';
import type { TestPki } from './tls-fixtures.js';

/**
 * A tiny S3 for tests: PUT and GET of objects under /bucket/key (path style), over HTTPS on 127.0.0.1, that checks
 * every signature the way S3 does — Authorization header, presigned query, every aws-chunked chunk signature and the
 * trailer signature — with the REAL credentials it was given, and answers 403 SignatureDoesNotMatch otherwise. It
 * canonicalises as S3 itself does (the wire path as it is, query re-encoded and sorted, repeated header values in
 * wire order) and accepts nothing signed with any other key id, secret or session token.
 */

export interface FakeS3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface FakeS3Request {
  method: string;
  path: string;
  auth: 'header' | 'presigned' | 'none';
  payload: string;
  accepted: boolean;
  reason?: string;
  bytes: number;
}

export interface FakeS3 {
  port: number;
  objects: Map<string, Buffer>;
  requests: FakeS3Request[];
  close(): Promise<void>;
}

class Rejection extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function values(req: http.IncomingMessage): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) pairs.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
  return pairs;
}

function header(pairs: Array<[string, string]>, name: string): string | undefined {
  return pairs.find(([n]) => n.toLowerCase() === name)?.[1];
}

interface Verified {
  signature: AwsSignature;
  amzDate: string;
  /** The request signature, seed of a chunk chain. */
  seed: string;
  payload: string;
}

/** Verifies under the real key: HMAC for SigV4, the derived public key for SigV4A. */
function verifier(credentials: FakeS3Credentials, signature: AwsSignature): (sts: string, sig: string) => boolean {
  if (signature.accessKeyId !== credentials.accessKeyId) {
    throw new Rejection('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
  }
  if (signature.algorithm === SIGV4_ALGORITHM) {
    const key = sigv4SigningKey(credentials.secretAccessKey, signature.scopeParts);
    return (sts, sig) => sigv4Verify(key, sts, sig);
  }
  const pair = deriveSigV4AKey(credentials.accessKeyId, credentials.secretAccessKey);
  return (sts, sig) => sigv4aVerify(pair.publicKey, sts, sig);
}

function verifyRequest(
  req: http.IncomingMessage,
  credentials: FakeS3Credentials,
): Verified & { auth: 'header' | 'presigned' } {
  const pairs = values(req);
  const { path, query } = splitTarget(req.url ?? '/');
  const params = parseRawQuery(query);
  const authorization = header(pairs, 'authorization');
  const presigned = authorization === undefined ? parsePresignedQuery(params) : null;
  const signature = authorization !== undefined ? parseAuthorizationHeader(authorization) : presigned;
  if (!signature) throw new Rejection('AccessDenied', 'Anonymous access is not allowed');
  const verify = verifier(credentials, signature);
  const token =
    presigned !== null
      ? params.find((p) => p.name === 'X-Amz-Security-Token')
      : { value: header(pairs, 'x-amz-security-token') ?? '' };
  const tokenValue = presigned !== null && token ? percentDecode(token.value).toString('utf8') : token?.value;
  if (credentials.sessionToken !== undefined && tokenValue !== credentials.sessionToken) {
    throw new Rejection('InvalidToken', 'The provided token is malformed or otherwise invalid.');
  }
  const amzDate = presigned ? presigned.amzDate : (header(pairs, 'x-amz-date') ?? '');
  const payload = presigned ? 'UNSIGNED-PAYLOAD' : (header(pairs, 'x-amz-content-sha256') ?? '');
  if (payload === '')
    throw new Rejection('InvalidRequest', 'Missing required header for this request: x-amz-content-sha256');
  const creq = canonicalRequest({
    method: req.method ?? 'GET',
    uri: canonicalUri(path, 'as-is'),
    query: canonicalQuery(params, {
      plusAsSpace: false,
      exclude: (n) => presigned !== null && n === 'X-Amz-Signature',
    }),
    headers: canonicalHeaders(pairs, signature.signedHeaders, { sortDuplicates: false }),
    signedHeaders: signature.signedHeaders,
    payloadHash: payload,
  });
  if (!verify(stringToSign(signature.algorithm, amzDate, signature.scope, creq), signature.signature)) {
    throw new Rejection(
      'SignatureDoesNotMatch',
      'The request signature we calculated does not match the signature you provided.',
    );
  }
  return { signature, amzDate, seed: signature.signature, payload, auth: presigned ? 'presigned' : 'header' };
}

/** Decodes an aws-chunked body, checking each chunk (and trailer) signature in the chain when the payload is signed. */
function decodeChunked(body: Buffer, v: Verified, credentials: FakeS3Credentials): Buffer {
  const signed = v.payload.startsWith('STREAMING-AWS4-');
  const prefix = v.signature.algorithm === SIGV4_ALGORITHM ? 'AWS4-HMAC-SHA256' : 'AWS4-ECDSA-P256-SHA256';
  const verify = verifier(credentials, v.signature);
  const bad = (what: string): never => {
    throw new Rejection('SignatureDoesNotMatch', `The ${what} signature we calculated does not match.`);
  };
  let previous = trimSigV4APadding(v.seed);
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', at);
    if (lineEnd < 0) throw new Rejection('IncompleteBody', 'aws-chunked body ended early');
    const [hex, ext = ''] = body.subarray(at, lineEnd).toString('latin1').split(';');
    const size = parseInt(hex!, 16);
    const data = body.subarray(lineEnd + 2, lineEnd + 2 + size);
    if (signed) {
      const given = trimSigV4APadding(/^chunk-signature=([0-9a-f*]+)$/.exec(ext)?.[1] ?? bad('chunk'));
      const sts = `${prefix}-PAYLOAD\n${v.amzDate}\n${v.signature.scope}\n${previous}\n${EMPTY_SHA256}\n${sha256Hex(data)}`;
      if (!verify(sts, given)) bad('chunk');
      previous = given;
    }
    if (size === 0) {
      at = lineEnd + 2;
      break;
    }
    parts.push(data);
    at = lineEnd + 2 + size + 2;
  }
  if (v.payload.endsWith('-TRAILER')) {
    const lines = body.subarray(at).toString('latin1').split('\r\n');
    const trailers: string[] = [];
    for (const line of lines) {
      if (line === '') break;
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name !== 'x-amz-trailer-signature') {
        trailers.push(`${name}:${value}\n`);
        continue;
      }
      if (!signed) continue;
      const sts = `${prefix}-TRAILER\n${v.amzDate}\n${v.signature.scope}\n${previous}\n${sha256Hex(trailers.sort().join(''))}`;
      if (!verify(sts, trimSigV4APadding(value))) bad('trailer');
    }
  }
  return Buffer.concat(parts);
}

function send(
  res: http.ServerResponse,
  status: number,
  body: string | Buffer,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-length': String(Buffer.byteLength(body)), ...headers });
  res.end(body);
}

export async function startFakeS3(
  pki: Pick<TestPki, 'certPem' | 'keyPem'>,
  credentials: FakeS3Credentials,
  /** Where to listen: 127.0.0.1 for in-process proxies, 0.0.0.0 for a proxy container reaching it via host-gateway. */
  host = '127.0.0.1',
): Promise<FakeS3> {
  const objects = new Map<string, Buffer>();
  const requests: FakeS3Request[] = [];
  const server = https.createServer({ cert: pki.certPem, key: pki.keyPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const path = splitTarget(req.url ?? '/').path;
      const record: FakeS3Request = {
        method: req.method ?? '',
        path,
        auth: 'none',
        payload: '',
        accepted: false,
        bytes: raw.length,
      };
      requests.push(record);
      try {
        const v = verifyRequest(req, credentials);
        record.auth = v.auth;
        record.payload = v.payload;
        let body: Buffer = raw;
        if (v.payload.startsWith('STREAMING-')) body = decodeChunked(raw, v, credentials);
        else if (/^[0-9a-f]{64}$/.test(v.payload) && sha256Hex(raw) !== v.payload) {
          throw new Rejection('XAmzContentSHA256Mismatch', 'The provided x-amz-content-sha256 header does not match.');
        }
        const key = decodeURIComponent(path);
        if (req.method === 'PUT') {
          objects.set(key, body);
          record.accepted = true;
          send(res, 200, '', { etag: `"${createHash('md5').update(body).digest('hex')}"` });
        } else if (req.method === 'GET' || req.method === 'HEAD') {
          const object = objects.get(key);
          record.accepted = object !== undefined;
          if (!object) send(res, 404, '<Error><Code>NoSuchKey</Code></Error>', { 'content-type': 'application/xml' });
          else if (req.method === 'HEAD') {
            res.writeHead(200, { 'content-length': String(object.length) });
            res.end();
          } else send(res, 200, object, { 'content-type': 'application/octet-stream' });
        } else send(res, 405, '<Error><Code>MethodNotAllowed</Code></Error>');
      } catch (err) {
        const code = err instanceof Rejection ? err.code : 'InternalError';
        record.reason = code;
        send(
          res,
          err instanceof Rejection ? 403 : 500,
          `<Error><Code>${code}</Code><Message>${(err as Error).message}</Message></Error>`,
          { 'content-type': 'application/xml' },
        );
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    objects,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
