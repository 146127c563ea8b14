import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import https from 'node:https';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { generateRunCa } from '../../src/cli/session/ca.js';
import { AllowlistSchema } from '../../src/protocol/allowlist.js';
import type { SigningCredential } from '../../src/protocol/proxy-wire.js';
import { createCredentialProcessor, type SigningTrace } from '../../src/proxy/credentials/index.js';
import { memoryLog } from '../../src/proxy/log/network-log.js';
import { startProxy, type RunningProxy } from '../../src/proxy/start.js';
import { clientChunkedBody, clientSign } from '../helpers/aws-client-signer.js';
import { startFakeS3, type FakeS3 } from '../helpers/fake-s3.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';

/**
 * End to end: the official AWS SDK for JavaScript, holding only surrogate credentials, talks to S3 through the real
 * proxy (in process, real sockets); the proxy re-signs; a fake S3 on 127.0.0.1 that verifies every signature with the
 * real credentials stores and serves the objects. Covers header-signed PUT/GET, a multi-MB streaming upload,
 * presigned GET and PUT URLs, and an aws-chunked upload with signed chunks (which the JS SDK never sends itself).
 */

const S3_HOST = 's3.us-east-1.amazonaws.com';
const REAL = {
  accessKeyId: 'AKIAREALREALREAL0009',
  secretAccessKey: 'RealSecretAccessKeyRealSecretAccessKey09',
  sessionToken: 'FwoGZXIvYXdzEREAL/session+token==',
};
const SURROGATE = {
  accessKeyId: 'ASIASURROGATE0000009',
  secretAccessKey: 'SurrogateSecretKeyThatIsFortyCharsLong09',
  sessionToken: 'S'.repeat(512),
};

const signingCredential: SigningCredential = {
  name: 'AWS',
  type: 'aws-sigv4',
  surrogateAccessKeyId: SURROGATE.accessKeyId,
  surrogateSecretAccessKey: SURROGATE.secretAccessKey,
  surrogateSessionToken: SURROGATE.sessionToken,
  accessKeyId: REAL.accessKeyId,
  secretAccessKey: REAL.secretAccessKey,
  sessionToken: REAL.sessionToken,
  scopes: ['*.amazonaws.com'],
};

let fake: FakeS3;
let proxy: RunningProxy;
let outOfScopeProxy: RunningProxy;
const runCaPems = new Map<RunningProxy, string>();
let fakeS3Ca: string;
const traces: SigningTrace[] = [];
const log = memoryLog();

async function startS3Proxy(
  credential: SigningCredential,
  pkiCa: string,
  record: SigningTrace[],
): Promise<RunningProxy> {
  const ca = await generateRunCa();
  const running = await startProxy({
    allowlist: AllowlistSchema.parse({ domains: [S3_HOST] }),
    ca,
    sandboxAddress: '10.199.1.100',
    listen: { host: '127.0.0.1', http: 0, https: 0, dns: 0 },
    upstream: {
      caPem: pkiCa,
      hosts: { [S3_HOST]: `127.0.0.1:${fake.port}` },
      resolve: () => Promise.reject(new Error('tests resolve nothing')),
    },
    credentials: createCredentialProcessor(
      { masked: [], signing: [credential] },
      { onSigned: (t) => record.push(t), maxChunkBytes: 1 << 20 },
    ),
    log,
  });
  runCaPems.set(running, ca.certPem);
  return running;
}

/** What the sandbox has: every name resolves to the proxy, whose CA the sandbox trusts. */
function sandboxAgent(target: RunningProxy): https.Agent {
  const runCaPem = runCaPems.get(target)!;
  const agent = new https.Agent({ keepAlive: true, ca: runCaPem });
  agent.createConnection = (options: tls.ConnectionOptions) =>
    tls.connect({ ...options, host: '127.0.0.1', port: target.addresses.https, servername: S3_HOST, ca: runCaPem });
  return agent;
}

function sdkClient(target: RunningProxy): S3Client {
  return new S3Client({
    region: 'us-east-1',
    endpoint: `https://${S3_HOST}`,
    forcePathStyle: true,
    credentials: SURROGATE,
    maxAttempts: 1,
    requestHandler: new NodeHttpHandler({ httpsAgent: sandboxAgent(target) }),
  });
}

function sha(data: Buffer | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

function pattern(size: number): Buffer {
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buf[i] = (i * 31 + 7) % 251;
  return buf;
}

/** A plain HTTPS request from the sandbox's side, through the proxy. */
function sandboxRequest(
  method: string,
  target: string,
  headers: Array<[string, string]>,
  body?: Buffer,
): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        method,
        host: S3_HOST,
        path: target,
        agent: sandboxAgent(proxy),
        // Raw pairs keep order and duplicates; Node then adds no Host of its own.
        headers: (headers.some(([n]) => n.toLowerCase() === 'host')
          ? headers
          : [['Host', S3_HOST], ...headers]
        ).flat() as unknown as Record<string, string>,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

before(async () => {
  const pki = await makeTestPki([S3_HOST]);
  fakeS3Ca = pki.caPem;
  fake = await startFakeS3(pki, REAL);
  outOfScopeProxy = await startS3Proxy({ ...signingCredential, scopes: ['*.example.com'] }, pki.caPem, []);
  proxy = await startS3Proxy(signingCredential, pki.caPem, traces);
});

after(async () => {
  await proxy.close();
  await outOfScopeProxy.close();
  await fake.close();
});

void describe('the AWS SDK with surrogate credentials, through the proxy, against an S3 that checks real signatures', () => {
  void it('puts and gets a small object', async () => {
    const s3 = sdkClient(proxy);
    const body = Buffer.from('hello from the sandbox');
    await s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'dir/hello world.txt', Body: body }));
    const got = await s3.send(new GetObjectCommand({ Bucket: 'bucket', Key: 'dir/hello world.txt' }));
    assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(body));
    assert.ok(fake.objects.get('/bucket/dir/hello world.txt')?.equals(body));
    s3.destroy();
  });

  void it('streams a multi-MB upload and reads it back', async () => {
    const s3 = sdkClient(proxy);
    const data = pattern(6 * 1024 * 1024 + 123);
    const before = fake.requests.length;
    await s3.send(
      new PutObjectCommand({
        Bucket: 'bucket',
        Key: 'big.bin',
        Body: Readable.from(
          (function* () {
            for (let at = 0; at < data.length; at += 256 * 1024) yield data.subarray(at, at + 256 * 1024);
          })(),
        ),
        ContentLength: data.length,
      }),
    );
    const put = fake.requests[before]!;
    assert.match(put.payload, /^STREAMING-|^[0-9a-f]{64}$|^UNSIGNED-PAYLOAD$/);
    const got = await s3.send(new GetObjectCommand({ Bucket: 'bucket', Key: 'big.bin' }));
    assert.equal(sha(await got.Body!.transformToByteArray()), sha(data));
    s3.destroy();
  });

  void it('uses presigned GET and PUT URLs', async () => {
    const s3 = sdkClient(proxy);
    const body = pattern(70_000);
    const putUrl = new URL(
      await getSignedUrl(s3, new PutObjectCommand({ Bucket: 'bucket', Key: 'presigned.bin' }), { expiresIn: 600 }),
    );
    assert.equal(putUrl.searchParams.get('X-Amz-Credential')?.split('/')[0], SURROGATE.accessKeyId);
    const put = await sandboxRequest(
      'PUT',
      putUrl.pathname + putUrl.search,
      [['Content-Length', String(body.length)]],
      body,
    );
    assert.equal(put.status, 200, put.body.toString());
    const getUrl = new URL(
      await getSignedUrl(s3, new GetObjectCommand({ Bucket: 'bucket', Key: 'presigned.bin' }), { expiresIn: 600 }),
    );
    const got = await sandboxRequest('GET', getUrl.pathname + getUrl.search, []);
    assert.equal(got.status, 200, got.body.toString());
    assert.ok(got.body.equals(body));
    assert.equal(fake.requests.at(-1)!.auth, 'presigned');
    s3.destroy();
  });

  void it('re-signs an aws-chunked upload chunk by chunk (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER)', async () => {
    const chunks = [pattern(65536), pattern(65536), pattern(1000)];
    const total = chunks.reduce((n, c) => n + c.length, 0);
    const amzDate = new Date()
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d{3}/, '');
    const signed = clientSign({
      version: 'v4',
      mode: 'header',
      method: 'PUT',
      path: '/bucket/chunked.bin',
      query: '',
      headers: [
        ['Host', S3_HOST],
        ['Content-Encoding', 'aws-chunked'],
        ['X-Amz-Decoded-Content-Length', String(total)],
        ['X-Amz-Trailer', 'x-amz-checksum-crc32'],
      ],
      body: Buffer.alloc(0),
      accessKeyId: SURROGATE.accessKeyId,
      secretAccessKey: SURROGATE.secretAccessKey,
      sessionToken: SURROGATE.sessionToken,
      region: 'us-east-1',
      service: 's3',
      amzDate,
      normalize: false,
      doubleEncode: false,
      signBody: true,
      omitSessionToken: false,
      expiresSeconds: 0,
      payloadHash: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER',
    });
    const { body } = clientChunkedBody({
      version: 'v4',
      accessKeyId: SURROGATE.accessKeyId,
      secretAccessKey: SURROGATE.secretAccessKey,
      amzDate,
      scope: signed.scope,
      seedSignature: signed.signature,
      chunks,
      trailers: [['x-amz-checksum-crc32', 'AAAAAA==']],
    });
    const res = await sandboxRequest(
      'PUT',
      signed.target,
      [...signed.headers, ['Content-Length', String(body.length)]],
      body,
    );
    assert.equal(res.status, 200, res.body.toString());
    assert.ok(fake.objects.get('/bucket/chunked.bin')?.equals(Buffer.concat(chunks)));
  });

  void it('re-signs a SigV4A (multi-region) PUT with signed aws-chunked data', async () => {
    const chunks = [pattern(8192), pattern(100)];
    const total = chunks.reduce((n, c) => n + c.length, 0);
    const amzDate = new Date()
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d{3}/, '');
    const signed = clientSign({
      version: 'v4a',
      mode: 'header',
      method: 'PUT',
      path: '/bucket/v4a.bin',
      query: '',
      headers: [
        ['Host', S3_HOST],
        ['Content-Encoding', 'aws-chunked'],
        ['X-Amz-Decoded-Content-Length', String(total)],
      ],
      body: Buffer.alloc(0),
      accessKeyId: SURROGATE.accessKeyId,
      secretAccessKey: SURROGATE.secretAccessKey,
      sessionToken: SURROGATE.sessionToken,
      region: '*',
      service: 's3',
      amzDate,
      normalize: false,
      doubleEncode: false,
      signBody: true,
      omitSessionToken: false,
      expiresSeconds: 0,
      payloadHash: 'STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD',
    });
    const { body } = clientChunkedBody({
      version: 'v4a',
      accessKeyId: SURROGATE.accessKeyId,
      secretAccessKey: SURROGATE.secretAccessKey,
      amzDate,
      scope: signed.scope,
      seedSignature: signed.signature,
      chunks,
    });
    const res = await sandboxRequest(
      'PUT',
      signed.target,
      [...signed.headers, ['Content-Length', String(body.length)]],
      body,
    );
    assert.equal(res.status, 200, res.body.toString());
    assert.ok(fake.objects.get('/bucket/v4a.bin')?.equals(Buffer.concat(chunks)));
  });

  void it('reproduced the SDK’s own canonical request for every request it re-signed', () => {
    assert.ok(traces.length >= 6);
    assert.deepEqual(
      traces.map((t) => t.clientSignatureVerified),
      traces.map(() => true),
    );
  });
});

void describe('the fake S3 is a real check', () => {
  void it('rejects the surrogate signature when the proxy does not re-sign (host out of scope)', async () => {
    const s3 = sdkClient(outOfScopeProxy);
    await assert.rejects(
      s3.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'nope', Body: 'x' })),
      (err: Error) => err.name === 'InvalidAccessKeyId',
    );
    assert.equal(fake.objects.has('/bucket/nope'), false);
    s3.destroy();
  });

  void it('rejects the real key id signed with a wrong secret', async () => {
    const signed = clientSign({
      version: 'v4',
      mode: 'header',
      method: 'GET',
      path: '/bucket/dir/hello%20world.txt',
      query: '',
      headers: [['Host', S3_HOST]],
      body: Buffer.alloc(0),
      accessKeyId: REAL.accessKeyId,
      secretAccessKey: 'WrongSecretWrongSecretWrongSecretWrong00',
      sessionToken: REAL.sessionToken,
      region: 'us-east-1',
      service: 's3',
      amzDate: new Date()
        .toISOString()
        .replace(/[-:]/g, '')
        .replace(/\.\d{3}/, ''),
      normalize: false,
      doubleEncode: false,
      signBody: true,
      omitSessionToken: false,
      expiresSeconds: 0,
    });
    const status = await new Promise<number>((resolve, reject) => {
      const req = https.request(
        {
          method: 'GET',
          host: '127.0.0.1',
          port: fake.port,
          path: signed.target,
          servername: S3_HOST,
          ca: fakeS3Ca,
          headers: signed.headers.flat() as unknown as Record<string, string>,
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 403);
    assert.equal(fake.requests.at(-1)!.reason, 'SignatureDoesNotMatch');
  });
});
