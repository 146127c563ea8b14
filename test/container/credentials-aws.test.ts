/**
 * AWS re-signing in the real sandbox, on Podman (and Docker when AIRLOCK_TEST_DOCKER=1): the official AWS SDK for
 * JavaScript (`@aws-sdk/client-s3`, default credential chain, default signer, default Node https handler) runs inside
 * the sandbox holding only surrogate credentials; the proxy re-signs; a fake S3 on this machine verifies every
 * signature (header, aws-chunked, presigned) with the REAL key, secret and session token and rejects anything else.
 * The project's node_modules is mounted read-only at /deps and found through NODE_PATH, as a CI job would use its own.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { randomString } from '../../src/protocol/surrogate.js';
import { startFakeS3, type FakeS3 } from '../helpers/fake-s3.js';
import {
  allOutput,
  allOutputFlags,
  canaryDumpScript,
  clearCanaryDump,
  ENGINES,
  findLeaks,
  makeWorkspace,
  networkLogText,
  readCanaryDump,
  REPO,
  runInSandbox,
  startRecordingUpstream,
  type RecordingUpstream,
  type UpstreamHandler,
  type SandboxRun,
} from '../helpers/sandbox-fixture.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';

const UPPER_DIGITS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const B64ISH = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const REAL = {
  accessKeyId: `AKIA${randomString(16, UPPER_DIGITS)}`,
  secretAccessKey: randomString(40, B64ISH),
  sessionToken: `FwoGZXIvYXdz${randomString(200, B64ISH)}`,
};

const S3 = 's3.test';
const VHOST_BUCKET = 'vhost';
// Allowed, served by the same fake S3, but outside the signing scopes: the surrogate signature arrives as it is.
const OUT_OF_SCOPE = 'storage.test';
// Also out of scope, served by a recorder that keeps every byte it receives, for the canary.
const OUT_OF_SCOPE_TAP = 'tap.storage.test';
// In scope, but plain HTTP: whatever the proxy sends there crosses the network in clear text.
const CLEARTEXT = 'cleartext.s3.test';

const BIG_BUFFER = 5 * 1024 * 1024 + 7;
const BIG_STREAM = 6 * 1024 * 1024 + 123;

/** Deterministic bytes; the same function runs in the sandbox (as source) and here. */
function pattern(size: number, seed: number): Buffer {
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buf[i] = (i * 31 + seed) % 251;
  return buf;
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** The sandboxed S3 client: prints `name=value` per operation; errors as `error:<name>:<status>`. */
const S3_CLIENT = `
const { S3Client, PutObjectCommand, GetObjectCommand } = require('@aws-sdk/client-s3');
const { getSignedUrl } = require('@aws-sdk/s3-request-presigner');
const { Readable } = require('node:stream');
const crypto = require('node:crypto');
const fs = require('node:fs');

${pattern.toString().replace(/: (number|Buffer)/g, '')}
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
const out = (name, value) => console.log(name + '=' + value);
async function attempt(name, run) {
  try {
    out(name, await run());
  } catch (err) {
    out(name, 'error:' + err.name + ':' + (err.$metadata ? err.$metadata.httpStatusCode : ''));
  }
}
const client = (extra) => new S3Client({ region: 'us-east-1', endpoint: 'https://${S3}', forcePathStyle: true, maxAttempts: 1, ...extra });
const s3 = client({});
async function roundTrip(c, bucket, key, body, length) {
  await c.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: length }));
  const got = await c.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return sha(Buffer.from(await got.Body.transformToByteArray()));
}
function chunks(data) {
  return Readable.from((function* () { for (let at = 0; at < data.length; at += 200000) yield data.subarray(at, at + 200000); })());
}

(async () => {
  const small = Buffer.from('hello from the sandbox');
  await attempt('small', () => roundTrip(s3, 'bucket', 'dir/hello world.txt', small));
  await attempt('big_buffer', () => roundTrip(s3, 'bucket', 'big-buffer.bin', pattern(${BIG_BUFFER}, 3)));
  const streamed = pattern(${BIG_STREAM}, 5);
  // A stream of unknown length is not a PutObject the SDK sends at all (it needs x-amz-decoded-content-length;
  // @aws-sdk/lib-storage's multipart Upload is its answer), so the stream says how long it is.
  await attempt('stream_known_length', () => roundTrip(s3, 'bucket', 'stream-known.bin', chunks(streamed), streamed.length));
  await attempt('vhost', () => roundTrip(client({ forcePathStyle: false }), '${VHOST_BUCKET}', 'v.txt', small));
  const presignedPut = await getSignedUrl(s3, new PutObjectCommand({ Bucket: 'bucket', Key: 'presigned.bin' }), { expiresIn: 600 });
  fs.writeFileSync('/tmp/put.url', presignedPut);
  fs.writeFileSync('/tmp/presigned.bin', pattern(70000, 9));
  out('presigned_put_key_id', new URL(presignedPut).searchParams.get('X-Amz-Credential').split('/')[0]);
  const presignedGet = await getSignedUrl(s3, new GetObjectCommand({ Bucket: 'bucket', Key: 'presigned.bin' }), { expiresIn: 600 });
  fs.writeFileSync('/tmp/get.url', presignedGet);
  // A key of the sandbox's own is not a surrogate: nothing re-signs it and S3 refuses it.
  const foreign = client({ credentials: { accessKeyId: 'AKIAFOREIGNFOREIGN00', secretAccessKey: 'ForeignSecretForeignSecretForeignSecret0' } });
  await attempt('foreign_key', () => roundTrip(foreign, 'bucket', 'foreign.txt', small));
  await attempt('out_of_scope', () => roundTrip(client({ endpoint: 'https://${OUT_OF_SCOPE}' }), 'bucket', 'oos.txt', small));
  await attempt('cleartext', async () => {
    const plain = client({ endpoint: 'http://${CLEARTEXT}', forcePathStyle: true });
    await plain.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'clear.txt', Body: small }));
    return 'sent';
  });
  await attempt('out_of_scope_tap', async () => {
    const tap = client({ endpoint: 'https://${OUT_OF_SCOPE_TAP}' });
    await tap.send(new PutObjectCommand({ Bucket: 'bucket', Key: 'tap.bin', Body: pattern(100000, 11) }));
    return 'sent';
  });
})();
`;

const PROBES = [
  'echo akid=$AWS_ACCESS_KEY_ID',
  'node /workspace/s3-client.cjs',
  'echo presigned_put=$(curl -sS -o /dev/null -w "%{http_code}" -T /tmp/presigned.bin "$(cat /tmp/put.url)")',
  'echo presigned_get=$(curl -sS "$(cat /tmp/get.url)" | sha256sum | cut -d" " -f1)',
  canaryDumpScript(['deps']),
].join('\n');

let fake: FakeS3;
let tap: RecordingUpstream;
let cleartext: RecordingUpstream;
let workspace: string;
const work: string[] = [];

before(async () => {
  const pki = await makeTestPki([S3, `${VHOST_BUCKET}.${S3}`, OUT_OF_SCOPE, OUT_OF_SCOPE_TAP]);
  fake = await startFakeS3(pki, REAL, '0.0.0.0');
  const accept: UpstreamHandler = (_req, res) => {
    res.writeHead(200, { 'Content-Length': 0 });
    res.end();
  };
  tap = await startRecordingUpstream(pki, accept);
  cleartext = await startRecordingUpstream(null, accept);
  workspace = await makeWorkspace({
    '.airlock/upstream-ca.pem': pki.caPem,
    '.airlock/sandbox.yaml': [
      'upstream_ca_file: upstream-ca.pem',
      'upstream_hosts:',
      `  ${S3}: host-gateway:${fake.port}`,
      `  ${VHOST_BUCKET}.${S3}: host-gateway:${fake.port}`,
      `  ${OUT_OF_SCOPE}: host-gateway:${fake.port}`,
      `  ${OUT_OF_SCOPE_TAP}: host-gateway:${tap.port}`,
      `  ${CLEARTEXT}: host-gateway:${cleartext.port}`,
      'env:',
      '  AWS_REGION: us-east-1',
      '  AWS_EC2_METADATA_DISABLED: "true"',
      '  NODE_PATH: /deps',
      'signing_credentials:',
      '  aws:',
      '    type: aws-sigv4',
      '    access_key_id: !env AWS_ACCESS_KEY_ID',
      '    secret_access_key: !env AWS_SECRET_ACCESS_KEY',
      '    session_token: !env AWS_SESSION_TOKEN',
      `    scopes: ["*.${S3}", "${S3}"]`,
      '',
    ].join('\n'),
    '.airlock/network-allowlist.yaml': `domains: [${S3}, "*.${S3}", ${OUT_OF_SCOPE}, ${OUT_OF_SCOPE_TAP}]\n`,
    's3-client.cjs': S3_CLIENT,
  });
  work.push(workspace);
});

after(async () => {
  await fake?.close();
  await tap?.close();
  await cleartext?.close();
  for (const dir of work) await rm(dir, { recursive: true, force: true });
});

for (const engine of ENGINES) {
  describe(`AWS SDK re-signed in the sandbox on ${engine}`, () => {
    let run: SandboxRun;
    let logDir: string;
    let firstRequest = 0;

    before(async () => {
      firstRequest = fake.requests.length;
      await clearCanaryDump(workspace);
      logDir = await mkdtemp(path.join(tmpdir(), 'airlock-aws-log-'));
      work.push(logDir);
      run = await runInSandbox(engine, workspace, PROBES, {
        env: {
          AWS_ACCESS_KEY_ID: REAL.accessKeyId,
          AWS_SECRET_ACCESS_KEY: REAL.secretAccessKey,
          AWS_SESSION_TOKEN: REAL.sessionToken,
        },
        extra: ['--mount', `${path.join(REPO, 'node_modules')}:/deps:ro`, ...allOutputFlags(logDir)],
      }).done;
    });

    it('the SDK in the sandbox holds surrogate credentials only', () => {
      assert.equal(run.code, 0, run.stderr);
      const akid = run.results.get('akid') ?? '';
      assert.match(akid, /^AKIA[A-Z0-9]{16}$/);
      assert.notEqual(akid, REAL.accessKeyId);
      assert.equal(run.results.get('presigned_put_key_id'), akid, 'the presigner signed with the surrogate');
    });

    it('puts and gets objects, path style and virtual-host style', () => {
      const small = Buffer.from('hello from the sandbox');
      assert.equal(run.results.get('small'), sha(small));
      assert.ok(fake.objects.get('/bucket/dir/hello world.txt')?.equals(small));
      assert.equal(run.results.get('vhost'), sha(small));
      assert.ok(fake.objects.get('/v.txt')?.equals(small));
    });

    it('uploads multi-MB bodies: a large Buffer, and a stream sent aws-chunked with a checksum trailer', () => {
      const big = pattern(BIG_BUFFER, 3);
      assert.equal(run.results.get('big_buffer'), sha(big));
      assert.equal(sha(fake.objects.get('/bucket/big-buffer.bin')!), sha(big));
      const streamed = pattern(BIG_STREAM, 5);
      assert.equal(run.results.get('stream_known_length'), sha(streamed));
      assert.equal(sha(fake.objects.get('/bucket/stream-known.bin')!), sha(streamed));
      const streamPut = fake.requests.slice(firstRequest).find((r) => r.path === '/bucket/stream-known.bin')!;
      assert.equal(streamPut.payload, 'STREAMING-UNSIGNED-PAYLOAD-TRAILER', 'the SDK streamed it aws-chunked');
      assert.ok(streamPut.bytes > BIG_STREAM, 'with chunk framing and a checksum trailer on the wire');
    });

    it('presigned PUT and GET URLs made by the SDK work from curl', () => {
      const body = pattern(70000, 9);
      assert.equal(run.results.get('presigned_put'), '200');
      assert.ok(fake.objects.get('/bucket/presigned.bin')?.equals(body));
      assert.equal(run.results.get('presigned_get'), sha(body));
      const presigned = fake.requests.slice(firstRequest).filter((r) => r.auth === 'presigned');
      assert.deepEqual(
        presigned.map((r) => [r.method, r.accepted]),
        [
          ['PUT', true],
          ['GET', true],
        ],
      );
    });

    it('the fake S3 refuses what the proxy does not re-sign: a foreign key, a host out of scope', () => {
      assert.equal(run.results.get('foreign_key'), 'error:InvalidAccessKeyId:403');
      assert.equal(run.results.get('out_of_scope'), 'error:InvalidAccessKeyId:403');
      assert.equal(fake.objects.has('/bucket/foreign.txt'), false);
      assert.equal(fake.objects.has('/bucket/oos.txt'), false);
      const refused = fake.requests.slice(firstRequest).filter((r) => !r.accepted);
      assert.equal(refused.length, 2, JSON.stringify(refused));
    });

    it('every request S3 accepted was signed with the real credentials, including the session token', () => {
      const accepted = fake.requests.slice(firstRequest).filter((r) => r.accepted);
      // small, big buffer, stream and vhost (PUT + GET each), then the presigned PUT and GET
      assert.equal(accepted.length, 10, JSON.stringify(fake.requests.slice(firstRequest)));
    });

    it('over plain HTTP to a host in scope, no real credential crosses the network: the request is not re-signed', () => {
      assert.equal(run.results.get('cleartext'), 'sent');
      const wire = cleartext.wire();
      assert.ok(wire.includes('PUT /bucket/clear.txt'), 'positive control: the tap saw the cleartext request');
      // Airut re-signs here, sending the real key id and session token in clear text; airlock forwards the
      // surrogate signature unchanged (the upstream refuses it), as it does for masked secrets.
      assert.ok(wire.includes(`Credential=${run.results.get('akid')!}/`), 'the surrogate signature went as it was');
      assert.deepEqual(findLeaks(wire, { ...REAL }), []);
    });

    it('canary: an out-of-scope host receives the surrogate signature and no byte of the real credentials', () => {
      assert.equal(run.results.get('out_of_scope_tap'), 'sent');
      const wire = tap.wire();
      const akid = run.results.get('akid')!;
      assert.ok(wire.includes(`Credential=${akid}/`), 'positive control: the surrogate key id arrived as sent');
      assert.ok(wire.length > 100000, 'the body was received too');
      assert.deepEqual(findLeaks(wire, { ...REAL }), []);
    });

    it('canary: the real key id, secret and session token are nowhere in the sandbox or airlock output', async () => {
      const dump = await readCanaryDump(workspace);
      const akid = run.results.get('akid')!;
      assert.ok(dump.env.includes(`AWS_ACCESS_KEY_ID=${akid}`), 'positive control: the surrogate is found');
      assert.ok(dump.proc.includes(`AWS_ACCESS_KEY_ID=${akid}`));
      const secrets = { ...REAL };
      assert.deepEqual(findLeaks(dump.all, secrets), []);
      assert.deepEqual(findLeaks(await allOutput(logDir, run), secrets), []);
      const netLog = await networkLogText(logDir);
      assert.match(
        netLog,
        new RegExp(
          `^ALLOWED PUT https://${S3}/bucket/big-buffer\\.bin\\?x-id=PutObject -> 200 \\[resigned\\] \\[region: us-east-1\\]$`,
          'm',
        ),
      );
    });
  });
}
