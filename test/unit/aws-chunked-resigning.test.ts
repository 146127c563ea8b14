import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { createCredentialProcessor } from '../../src/proxy/credentials/index.js';
import type { CredentialResult, RequestHead } from '../../src/proxy/credentials/types.js';
import type { SigningCredential } from '../../src/protocol/proxy-wire.js';
import { AwsChunkResigner } from '../../src/proxy/credentials/aws/chunked.js';
import { sha256Hex } from '../../src/proxy/credentials/aws/canonical.js';
import { sigv4Sign, sigv4SigningKey } from '../../src/proxy/credentials/aws/sigv4.js';
import { deriveSigV4AKey, sigv4aSign, sigv4aVerify } from '../../src/proxy/credentials/aws/sigv4a.js';
import { clientChunkedBody, clientSign } from '../helpers/aws-client-signer.js';

/**
 * Streaming (aws-chunked) uploads are re-signed chunk by chunk as they pass: checked against the S3 documentation
 * example as aws-c-auth pins it (seed, three chunk signatures, trailer signature), with the body cut into 1-byte and
 * random pieces, and for SigV4A by verifying every chunk signature under the real key's public half.
 */

interface ChunkedVector {
  credentials: { access_key_id: string; secret_access_key: string };
  region: string;
  service: string;
  timestamp: string;
  request: { method: string; path: string; headers: Record<string, string> };
  chunks: Array<{ size: number; byte: string; expected_signature: string }>;
  expected_authorization: string;
  expected_seed_signature: string;
}

const VECTOR = JSON.parse(
  readFileSync(join(import.meta.dirname, '../vectors/aws-sigv4-chunked.json'), 'utf8'),
) as ChunkedVector;
const SURROGATE_KEY_ID = 'AKIASURROGATE0000002';
const SURROGATE_SECRET = 'SurrogateSecretKeyThatIsFortyCharsLong01';
const TRAILER_VECTOR_SIGNATURE = 'df5735bd9f3295cd9386572292562fefc93ba94e80a0a1ddcbd652c4e0a75e6c';

const chunkData = VECTOR.chunks.filter((c) => c.size > 0).map((c) => Buffer.alloc(c.size, c.byte));
const scope = `${VECTOR.timestamp.slice(0, 8)}/${VECTOR.region}/${VECTOR.service}/aws4_request`;

function credential(algorithmRealKeyId = VECTOR.credentials.access_key_id): SigningCredential {
  return {
    name: 'AWS',
    type: 'aws-sigv4',
    surrogateAccessKeyId: SURROGATE_KEY_ID,
    surrogateSecretAccessKey: SURROGATE_SECRET,
    accessKeyId: algorithmRealKeyId,
    secretAccessKey: VECTOR.credentials.secret_access_key,
    scopes: ['s3.amazonaws.com'],
  };
}

/** Feeds `body` to the transform in pieces of the given sizes (cycled), returns everything it emitted. */
async function pipeInPieces(transform: NodeJS.ReadWriteStream, body: Buffer, sizes: number[]): Promise<Buffer> {
  const out: Buffer[] = [];
  transform.on('data', (d: Buffer) => out.push(d));
  const ended = new Promise<void>((resolve, reject) => {
    transform.on('end', resolve);
    transform.on('error', reject);
  });
  let at = 0;
  for (let i = 0; at < body.length; i++) {
    const size = Math.max(1, sizes[i % sizes.length]!);
    transform.write(body.subarray(at, at + size));
    at += size;
  }
  transform.end();
  await ended;
  return Buffer.concat(out);
}

function chunkSignatures(body: Buffer): string[] {
  return [...body.toString('latin1').matchAll(/;chunk-signature=([0-9a-f*]+)\r\n/g)].map((m) => m[1]!);
}

function dataOf(body: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', at);
    const size = parseInt(body.subarray(at, lineEnd).toString('latin1').split(';')[0]!, 16);
    if (size === 0) return Buffer.concat(parts);
    parts.push(body.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
}

/** The surrogate-signed streaming PUT of the vector, through the proxy's credential pass. */
function resignVectorRequest(): { result: CredentialResult; surrogateBody: Buffer } {
  const headers = Object.entries<string>(VECTOR.request.headers).filter(
    ([n]) => n !== 'x-amz-date' && n !== 'x-amz-content-sha256',
  );
  const signed = clientSign({
    version: 'v4',
    mode: 'header',
    method: VECTOR.request.method,
    path: VECTOR.request.path,
    query: '',
    headers,
    body: Buffer.alloc(0),
    accessKeyId: SURROGATE_KEY_ID,
    secretAccessKey: SURROGATE_SECRET,
    region: VECTOR.region,
    service: VECTOR.service,
    amzDate: VECTOR.timestamp,
    normalize: false,
    doubleEncode: false,
    signBody: true,
    omitSessionToken: false,
    expiresSeconds: 0,
    payloadHash: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
  });
  const { body } = clientChunkedBody({
    version: 'v4',
    accessKeyId: SURROGATE_KEY_ID,
    secretAccessKey: SURROGATE_SECRET,
    amzDate: VECTOR.timestamp,
    scope,
    seedSignature: signed.signature,
    chunks: chunkData,
  });
  const processor = createCredentialProcessor(
    { masked: [], signing: [credential()] },
    { now: () => new Date('2013-05-24T00:00:00Z') },
  );
  const head: RequestHead = {
    method: signed.method,
    host: 's3.amazonaws.com',
    hostHeader: 's3.amazonaws.com',
    port: 443,
    target: signed.target,
    headers: signed.headers,
  };
  const outcome = processor(head);
  assert.equal(outcome.kind, 'ready');
  return { result: outcome.kind === 'ready' ? outcome.result : assert.fail(), surrogateBody: body };
}

void describe('aws-chunked SigV4 re-signing against the S3 documentation example', () => {
  void it('re-signs the seed to the published Authorization header', () => {
    const { result } = resignVectorRequest();
    const auth = result.headers.find(([n]) => n === 'Authorization')![1];
    assert.equal(auth, VECTOR.expected_authorization);
    assert.ok(result.bodyTransform, 'a streaming upload must get a body transform');
  });

  for (const [label, sizes] of [
    ['in one piece', [1 << 30]],
    ['one byte at a time', [1]],
    ['split inside chunk headers and CRLFs', [3, 7, 86, 65536, 2, 1, 90]],
  ] as const) {
    void it(`re-signs every chunk to the published signatures, body fed ${label}`, async () => {
      const { result, surrogateBody } = resignVectorRequest();
      const out = await pipeInPieces(result.bodyTransform!(), surrogateBody, [...sizes]);
      assert.deepEqual(
        chunkSignatures(out),
        VECTOR.chunks.map((c) => c.expected_signature),
      );
      assert.equal(out.length, surrogateBody.length, 'Content-Length must still hold');
      assert.ok(dataOf(out).equals(Buffer.concat(chunkData)));
    });
  }

  void it('gives the same output for any way the body is cut', async () => {
    const { surrogateBody } = resignVectorRequest();
    const { result } = resignVectorRequest();
    const reference = await pipeInPieces(result.bodyTransform!(), surrogateBody, [surrogateBody.length]);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 9000 }), { minLength: 1, maxLength: 20 }), async (sizes) => {
        const out = await pipeInPieces(result.bodyTransform!(), surrogateBody, sizes);
        assert.ok(out.equals(reference));
      }),
      { numRuns: 40 },
    );
  });

  void it("signs the trailer over its canonical headers, chained from the final chunk (aws-c-auth's vector)", async () => {
    const key = sigv4SigningKey(VECTOR.credentials.secret_access_key, scope.split('/'));
    const resigner = new AwsChunkResigner(
      {
        algorithm: 'AWS4-HMAC-SHA256',
        amzDate: VECTOR.timestamp,
        scope,
        seedSignature: VECTOR.expected_seed_signature,
        trailer: true,
        sign: (sts) => sigv4Sign(key, sts),
      },
      { maxChunkBytes: 1 << 20 },
    );
    const { body } = clientChunkedBody({
      version: 'v4',
      accessKeyId: SURROGATE_KEY_ID,
      secretAccessKey: SURROGATE_SECRET,
      amzDate: VECTOR.timestamp,
      scope,
      seedSignature: 'surrogate-seed',
      chunks: chunkData,
      trailers: [
        ['first', '1st'],
        ['second', '2nd'],
        ['third', '3rd'],
      ],
    });
    const out = await pipeInPieces(resigner, body, [1]);
    assert.deepEqual(
      chunkSignatures(out),
      VECTOR.chunks.map((c) => c.expected_signature),
    );
    const trailer = /x-amz-trailer-signature:([0-9a-f]+)\r\n\r\n$/.exec(out.toString('latin1'));
    assert.equal(trailer?.[1], TRAILER_VECTOR_SIGNATURE);
    assert.ok(out.toString('latin1').includes('first:1st\r\nsecond:2nd\r\nthird:3rd\r\n'));
  });
});

void describe('aws-chunked SigV4A re-signing', () => {
  void it('re-signs every chunk and the trailer so each verifies under the real public key, widths kept', async () => {
    const real = deriveSigV4AKey('AKIDEXAMPLE', 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY');
    const v4aScope = '20150830/s3/aws4_request';
    const seed = 'ab'.repeat(35);
    const resigner = new AwsChunkResigner(
      {
        algorithm: 'AWS4-ECDSA-P256-SHA256',
        amzDate: '20150830T123600Z',
        scope: v4aScope,
        seedSignature: seed,
        trailer: true,
        sign: (sts) => sigv4aSign(real, sts),
      },
      { maxChunkBytes: 1 << 20 },
    );
    const chunks = [Buffer.alloc(1000, 'x'), Buffer.alloc(17, 'y')];
    const trailers: Array<[string, string]> = [['x-amz-checksum-crc32', 'AAAAAA==']];
    const { body } = clientChunkedBody({
      version: 'v4a',
      accessKeyId: SURROGATE_KEY_ID,
      secretAccessKey: SURROGATE_SECRET,
      amzDate: '20150830T123600Z',
      scope: v4aScope,
      seedSignature: 'cd'.repeat(35),
      chunks,
      trailers,
    });
    const out = await pipeInPieces(resigner, body, [5, 1, 300]);
    assert.equal(out.length, body.length, 'padding keeps every signature the width the client sent');
    const text = out.toString('latin1');
    const signatures = [...chunkSignatures(out), /x-amz-trailer-signature:([0-9a-f*]+)\r\n/.exec(text)![1]!].map((s) =>
      s.replace(/\*+$/, ''),
    );
    let previous = seed;
    const empty = sha256Hex('');
    [...chunks, Buffer.alloc(0)].forEach((data, i) => {
      const sts = `AWS4-ECDSA-P256-SHA256-PAYLOAD\n20150830T123600Z\n${v4aScope}\n${previous}\n${empty}\n${sha256Hex(data)}`;
      assert.ok(sigv4aVerify(real.publicKey, sts, signatures[i]!), `chunk ${i} does not verify`);
      previous = signatures[i]!;
    });
    const trailerSts = `AWS4-ECDSA-P256-SHA256-TRAILER\n20150830T123600Z\n${v4aScope}\n${previous}\n${sha256Hex('x-amz-checksum-crc32:AAAAAA==\n')}`;
    assert.ok(sigv4aVerify(real.publicKey, trailerSts, signatures[3]!), 'trailer does not verify');
  });
});

/** A surrogate-signed aws-chunked body with the given chunks, for the framing tests. */
function surrogateBody(chunks: Buffer[]): Buffer {
  return clientChunkedBody({
    version: 'v4',
    accessKeyId: SURROGATE_KEY_ID,
    secretAccessKey: SURROGATE_SECRET,
    amzDate: VECTOR.timestamp,
    scope,
    seedSignature: 'seed',
    chunks,
  }).body;
}

void describe('aws-chunked framing the proxy cannot re-sign', () => {
  const key = sigv4SigningKey('secret', scope.split('/'));
  const context = {
    algorithm: 'AWS4-HMAC-SHA256' as const,
    amzDate: VECTOR.timestamp,
    scope,
    seedSignature: 'seed',
    trailer: false,
    sign: (sts: string) => sigv4Sign(key, sts),
  };

  void it('passes a body that is not aws-chunked through unchanged and says why', async () => {
    const body = Buffer.from('this is not chunked at all\r\nnor is this\r\n');
    const resigner = new AwsChunkResigner(context, { maxChunkBytes: 1024 });
    const out = await pipeInPieces(resigner, body, [4]);
    assert.ok(out.equals(body));
    assert.match(resigner.failure ?? '', /not an aws-chunked chunk header/);
  });

  void it('never holds more than maxChunkBytes: a larger chunk passes through unsigned', async () => {
    const body = surrogateBody([Buffer.alloc(4096, 'z')]);
    const resigner = new AwsChunkResigner(context, { maxChunkBytes: 1024 });
    const out = await pipeInPieces(resigner, body, [100]);
    assert.ok(out.equals(body));
    assert.ok(resigner.failure);
  });

  void it('forwards what it held when the body ends mid-chunk', async () => {
    const body = surrogateBody([Buffer.alloc(500, 'q')]);
    const truncated = body.subarray(0, 300);
    const resigner = new AwsChunkResigner(context, { maxChunkBytes: 1024 });
    const out = await pipeInPieces(resigner, truncated, [64]);
    assert.ok(out.equals(truncated));
    assert.match(resigner.failure ?? '', /ended inside/);
  });
});
