import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createCredentialProcessor, type SigningTrace } from '../../src/proxy/credentials/index.js';
import type { CredentialOutcome, CredentialResult, RequestHead } from '../../src/proxy/credentials/types.js';
import type { MaskedCredential, SigningCredential } from '../../src/protocol/proxy-wire.js';
import { parseAuthorizationHeader } from '../../src/proxy/credentials/aws/authorization.js';
import { clientSign, type ClientSigningInput } from '../helpers/aws-client-signer.js';

/**
 * Which requests the AWS pass takes, what it sends on, and what it does when it cannot re-sign. The reference for
 * every signature is the same request signed by a client holding the real credentials: re-signing a
 * surrogate-signed request must give exactly that.
 */

const REAL = {
  keyId: 'AKIAREALREALREAL0001',
  secret: 'RealSecretAccessKeyRealSecretAccessKey00',
  token: 'REAL-session-token/+=',
};
const SURROGATE = {
  keyId: 'AKIASURROGATE0000003',
  secret: 'SurrogateSecretKeyThatIsFortyCharsLong02',
  token: 'S'.repeat(512),
};
const NOW = new Date('2026-11-27T00:00:00Z');
const AMZ_DATE = '20261127T000000Z';

const signing: SigningCredential = {
  name: 'AWS',
  type: 'aws-sigv4',
  surrogateAccessKeyId: SURROGATE.keyId,
  surrogateSecretAccessKey: SURROGATE.secret,
  accessKeyId: REAL.keyId,
  secretAccessKey: REAL.secret,
  surrogateSessionToken: SURROGATE.token,
  sessionToken: REAL.token,
  scopes: ['*.amazonaws.com'],
};

const masked: MaskedCredential = {
  name: 'GH',
  surrogate: 'ghp_SURROGATE000000000000000000000000',
  value: 'ghp_REALREALREALREALREALREALREALREAL00',
  scopes: ['api.github.com'],
  headers: ['Authorization'],
  allowForeignCredentials: false,
};

type Request = Omit<ClientSigningInput, 'accessKeyId' | 'secretAccessKey' | 'sessionToken' | 'amzDate'>;

const s3Put: Request = {
  version: 'v4',
  mode: 'header',
  method: 'PUT',
  path: '/bucket/dir/my%20key%3A1.txt',
  query: 'x-id=PutObject',
  headers: [
    ['Host', 'bucket.s3.us-west-2.amazonaws.com'],
    ['Content-Length', '5'],
  ],
  body: Buffer.from('hello'),
  region: 'us-west-2',
  service: 's3',
  normalize: false,
  doubleEncode: false,
  signBody: true,
  omitSessionToken: false,
  expiresSeconds: 3600,
};

/** What @aws-sdk/s3-request-presigner produces for a GET. */
const s3PresignedGet: Request = {
  ...s3Put,
  mode: 'query',
  method: 'GET',
  headers: [['Host', 'bucket.s3.us-west-2.amazonaws.com']],
  body: Buffer.alloc(0),
  payloadHash: 'UNSIGNED-PAYLOAD',
};

function sign(request: Request, who: 'real' | 'surrogate'): ReturnType<typeof clientSign> {
  const creds = who === 'real' ? REAL : SURROGATE;
  return clientSign({
    ...request,
    accessKeyId: creds.keyId,
    secretAccessKey: creds.secret,
    sessionToken: creds.token,
    amzDate: AMZ_DATE,
  });
}

function head(signed: ReturnType<typeof clientSign>, host?: string): RequestHead {
  const hostHeader = host ?? signed.headers.find(([n]) => n.toLowerCase() === 'host')![1];
  return {
    method: signed.method,
    host: hostHeader,
    hostHeader,
    port: 443,
    target: signed.target,
    headers: signed.headers,
  };
}

function processor(
  config: { signing?: SigningCredential[]; masked?: MaskedCredential[] } = {},
  now = NOW,
  traces?: SigningTrace[],
) {
  return createCredentialProcessor(
    { signing: config.signing ?? [signing], masked: config.masked ?? [] },
    { now: () => now, maxDeferredBody: 1234, ...(traces ? { onSigned: (t: SigningTrace) => traces.push(t) } : {}) },
  );
}

function ready(outcome: CredentialOutcome): CredentialResult {
  assert.equal(outcome.kind, 'ready');
  return outcome.kind === 'ready' ? outcome.result : assert.fail();
}

function authorization(result: CredentialResult | ReturnType<typeof clientSign>): string {
  return result.headers.find(([n]) => n.toLowerCase() === 'authorization')![1];
}

void describe('AWS re-signing: what is re-signed', () => {
  void it('a surrogate-signed S3 PUT leaves with exactly the real client’s Authorization', () => {
    const result = ready(processor()(head(sign(s3Put, 'surrogate'))));
    assert.equal(authorization(result), authorization(sign(s3Put, 'real')));
    assert.deepEqual(result.annotations, ['resigned', 'region: us-west-2']);
    assert.deepEqual(result.events, []);
  });

  void it('swaps a signed session token before canonicalising, so the signature covers the real token (Airut D4)', () => {
    const traces: SigningTrace[] = [];
    const result = ready(processor({}, NOW, traces)(head(sign(s3Put, 'surrogate'))));
    assert.ok(authorization(result).includes('x-amz-security-token'));
    assert.deepEqual(
      result.headers.filter(([n]) => n.toLowerCase() === 'x-amz-security-token'),
      [['X-Amz-Security-Token', REAL.token]],
    );
    assert.ok(traces[0]!.canonicalRequest.includes(`x-amz-security-token:${REAL.token}\n`));
    assert.ok(!traces[0]!.canonicalRequest.includes(SURROGATE.token));
    assert.equal(authorization(result), authorization(sign(s3Put, 'real')));
  });

  void it('re-signs an S3 presigned URL in the query: real credential and token, order kept, UNSIGNED-PAYLOAD', () => {
    const result = ready(processor()(head(sign(s3PresignedGet, 'surrogate'))));
    assert.equal(result.target, sign(s3PresignedGet, 'real').target);
    assert.deepEqual(result.annotations, ['resigned', 'region: us-west-2']);
  });

  void it('caps a presigned URL’s validity once it carries a real signature', () => {
    const longLived: Request = { ...s3PresignedGet, expiresSeconds: 604800 };
    const result = ready(processor()(head(sign(longLived, 'surrogate'))));
    assert.equal(result.target, sign({ ...longLived, expiresSeconds: 3600 }, 'real').target);
    assert.match(result.events.join('\n'), /X-Amz-Expires lowered to 3600s/);
  });

  void it('asks for the body when a non-S3 signature covers a body hash the client did not send', () => {
    const sqs: Request = {
      ...s3Put,
      method: 'POST',
      path: '/',
      query: '',
      headers: [
        ['Host', 'sqs.us-east-1.amazonaws.com'],
        ['Content-Type', 'application/x-www-form-urlencoded'],
        ['Content-Length', '27'],
      ],
      body: Buffer.from('Action=ListQueues&Version=1'),
      region: 'us-east-1',
      service: 'sqs',
      normalize: true,
      doubleEncode: true,
      signBody: false,
    };
    const outcome = processor()(head(sign(sqs, 'surrogate')));
    assert.equal(outcome.kind, 'needs-body');
    if (outcome.kind !== 'needs-body') return;
    assert.equal(outcome.maxBytes, 1234);
    assert.equal(authorization(outcome.complete(sqs.body)), authorization(sign(sqs, 'real')));
  });

  void it('does not ask for the body of a request whose Content-Length is 0', () => {
    const get: Request = {
      ...s3Put,
      method: 'GET',
      path: '/',
      headers: [
        ['Host', 'sts.amazonaws.com'],
        ['Content-Length', '0'],
      ],
      body: Buffer.alloc(0),
      service: 'sts',
      signBody: false,
      normalize: true,
      doubleEncode: true,
    };
    const result = ready(processor()(head(sign(get, 'surrogate'))));
    assert.equal(authorization(result), authorization(sign(get, 'real')));
  });

  void it('asks for the body when there is no Content-Length (a stripped Transfer-Encoding may hide one)', () => {
    const post: Request = {
      ...s3Put,
      method: 'POST',
      path: '/',
      query: '',
      headers: [['Host', 'sts.amazonaws.com']],
      body: Buffer.from('Action=GetCallerIdentity&Version=2011-06-15'),
      service: 'sts',
      signBody: false,
      normalize: true,
      doubleEncode: true,
    };
    const outcome = processor()(head(sign(post, 'surrogate')));
    assert.equal(outcome.kind, 'needs-body');
    if (outcome.kind !== 'needs-body') return;
    assert.equal(authorization(outcome.complete(post.body)), authorization(sign(post, 'real')));
  });

  void it('re-signs SigV4A and annotates the region set', () => {
    const v4a: Request = { ...s3Put, version: 'v4a', region: 'us-west-2,eu-west-1' };
    const result = ready(processor()(head(sign(v4a, 'surrogate'))));
    const parsed = parseAuthorizationHeader(authorization(result))!;
    assert.equal(parsed.accessKeyId, REAL.keyId);
    assert.match(parsed.signature, /^30[0-9a-f]+$/);
    assert.deepEqual(result.annotations, ['resigned', 'region: us-west-2,eu-west-1']);
  });

  void it('keeps one Authorization header when the client sent several', () => {
    const signed = sign(s3Put, 'surrogate');
    const doubled = {
      ...signed,
      headers: [...signed.headers, ['authorization', 'AWS4-HMAC-SHA256 attacker'] as [string, string]],
    };
    const result = ready(processor()(head(doubled)));
    assert.equal(result.headers.filter(([n]) => n.toLowerCase() === 'authorization').length, 1);
    assert.equal(authorization(result), authorization(sign(s3Put, 'real')));
    assert.match(result.events.join('\n'), /^COLLAPSED 2 duplicate 'authorization' headers/m);
  });

  void it('streams: a signed aws-chunked upload gets a body transform, an unsigned-trailer one does not', () => {
    const streaming = sign({ ...s3Put, payloadHash: 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD' }, 'surrogate');
    assert.ok(ready(processor()(head(streaming))).bodyTransform);
    const unsigned = sign({ ...s3Put, payloadHash: 'STREAMING-UNSIGNED-PAYLOAD-TRAILER' }, 'surrogate');
    const result = ready(processor()(head(unsigned)));
    assert.equal(result.bodyTransform, undefined);
    assert.equal(
      authorization(result),
      authorization(sign({ ...s3Put, payloadHash: 'STREAMING-UNSIGNED-PAYLOAD-TRAILER' }, 'real')),
    );
  });
});

void describe('AWS re-signing: what is left alone', () => {
  void it('a surrogate key id on a host outside the scopes is forwarded unchanged', () => {
    const signed = sign(s3Put, 'surrogate');
    const result = ready(processor()(head(signed, 'evil.example.com')));
    assert.deepEqual(result.headers, signed.headers);
    assert.deepEqual(result.annotations, []);
  });

  void it('an unknown key id falls through to masked secrets, untouched', () => {
    const foreign = clientSign({
      ...s3Put,
      accessKeyId: 'AKIAFOREIGN000000000',
      secretAccessKey: 'x'.repeat(40),
      amzDate: AMZ_DATE,
    });
    const result = ready(processor()(head(foreign)));
    assert.deepEqual(result.headers, foreign.headers);
    assert.ok(!result.annotations.includes('resigned'));
  });

  void it('a non-AWS Authorization goes to the masked-secret pass', () => {
    const result = ready(
      processor({ masked: [masked] })({
        method: 'GET',
        host: 'api.github.com',
        hostHeader: 'api.github.com',
        port: 443,
        target: '/user',
        headers: [['Authorization', `Bearer ${masked.surrogate}`]],
      }),
    );
    // The real value went out, so the answer is asked for uncompressed: the response scrubber reads it as it streams.
    assert.deepEqual(result.headers, [
      ['Authorization', `Bearer ${masked.value}`],
      ['Accept-Encoding', 'identity'],
    ]);
  });

  void it('a presigned-looking query on a request with an Authorization header is not re-signed in the query (Airut item 125)', () => {
    const presigned = sign(
      { ...s3Put, mode: 'query', method: 'GET', body: Buffer.alloc(0), payloadHash: 'UNSIGNED-PAYLOAD' },
      'surrogate',
    );
    const withAuth = {
      ...presigned,
      headers: [...presigned.headers, ['Authorization', 'Bearer x'] as [string, string]],
    };
    const result = ready(processor()(head(withAuth)));
    assert.equal(result.target, presigned.target);
  });
});

void describe('AWS re-signing: failures and warnings', () => {
  void it('forwards unchanged with an event when the request has no usable X-Amz-Date (fail open, Airut item 148)', () => {
    const signed = sign(s3Put, 'surrogate');
    const undated = { ...signed, headers: signed.headers.filter(([n]) => n.toLowerCase() !== 'x-amz-date') };
    const result = ready(processor()(head(undated)));
    assert.deepEqual(result.headers, undated.headers);
    assert.match(
      result.events.join('\n'),
      /^re-sign failed for PUT bucket\.s3\.us-west-2\.amazonaws\.com: no valid X-Amz-Date; forwarded unchanged$/,
    );
  });

  void it('warns about clock skew beyond five minutes, in Airut’s words, and still re-signs with the client’s date', () => {
    const later = new Date(NOW.getTime() + 7 * 60_000 + 30_000);
    const result = ready(processor({}, later)(head(sign(s3Put, 'surrogate'))));
    assert.deepEqual(result.events, [
      'WARNING: Container clock skew detected: x-amz-date=20261127T000000Z, proxy-time=20261127T000730Z (drift=7m). Upstream rejection likely.',
    ]);
    assert.equal(authorization(result), authorization(sign(s3Put, 'real')));
    const fiveMinutes = ready(
      processor({}, new Date(NOW.getTime() + 5 * 60_000 + 59_000))(head(sign(s3Put, 'surrogate'))),
    );
    assert.deepEqual(fiveMinutes.events, []);
  });

  void it('says so when the client signature matches no known form, and signs the service default', () => {
    const signed = sign(s3Put, 'surrogate');
    const tampered = {
      ...signed,
      headers: signed.headers.map(([n, v]): [string, string] => (n === 'Content-Length' ? [n, '6'] : [n, v])),
    };
    const traces: SigningTrace[] = [];
    const result = ready(processor({}, NOW, traces)(head(tampered)));
    assert.equal(traces[0]!.clientSignatureVerified, false);
    assert.match(result.events.join('\n'), /matches no canonical form/);
    assert.ok(result.annotations.includes('resigned'));
  });

  void it('without the surrogate secret, uses AWS’s default for the service and still matches a standard client', () => {
    const { surrogateSecretAccessKey: _omitted, ...withoutSecret } = signing;
    const traces: SigningTrace[] = [];
    const result = ready(processor({ signing: [withoutSecret] }, NOW, traces)(head(sign(s3Put, 'surrogate'))));
    assert.equal(traces[0]!.clientSignatureVerified, null);
    assert.equal(authorization(result), authorization(sign(s3Put, 'real')));
  });

  void it('never puts a key, a secret or a token into annotations or events', () => {
    const outputs: string[] = [];
    for (const now of [NOW, new Date(0)]) {
      const signed = sign(s3Put, 'surrogate');
      const result = ready(processor({}, now)(head(signed)));
      outputs.push(...result.annotations, ...result.events);
    }
    const text = outputs.join('\n');
    for (const secret of [REAL.keyId, REAL.secret, REAL.token, SURROGATE.keyId, SURROGATE.secret, SURROGATE.token]) {
      assert.ok(!text.includes(secret));
    }
  });
});

void describe('AWS re-signing: never over plain HTTP', () => {
  const secretsIn = (result: CredentialResult) =>
    JSON.stringify([result.headers, result.target, result.events, result.annotations]);

  void it('a surrogate-signed request to an in-scope host over http:// is forwarded with its surrogates, not re-signed', () => {
    const signed = sign(s3Put, 'surrogate');
    const result = ready(processor()({ ...head(signed), scheme: 'http' }));
    assert.equal(authorization(result), authorization(signed), 'the surrogate signature is left as it was');
    for (const real of [REAL.keyId, REAL.token, REAL.secret]) assert.ok(!secretsIn(result).includes(real));
    assert.ok(!result.annotations.includes('resigned'));
    assert.match(
      result.events[0] ?? '',
      /^NOT RESIGNED AWS request with surrogate key AKIA… for PUT http:\/\/bucket\.s3\.us-west-2\.amazonaws\.com\/bucket\//,
    );
  });

  void it('a presigned URL over http:// keeps the surrogate credential in its query', () => {
    const signed = sign(s3PresignedGet, 'surrogate');
    const result = ready(processor()({ ...head(signed), scheme: 'http' }));
    assert.equal(result.target, signed.target);
    for (const real of [REAL.keyId, REAL.token]) assert.ok(!secretsIn(result).includes(real));
    assert.match(result.events[0] ?? '', /^NOT RESIGNED/);
  });

  void it('the same request over https:// is re-signed (the control)', () => {
    const result = ready(processor()({ ...head(sign(s3Put, 'surrogate')), scheme: 'https' }));
    assert.equal(authorization(result), authorization(sign(s3Put, 'real')));
  });

  void it('a malformed escape in an http:// target neither throws nor re-signs', () => {
    const signed = sign(s3PresignedGet, 'surrogate');
    const result = ready(processor()({ ...head(signed), target: `${signed.target}&x=%E0%A4%A`, scheme: 'http' }));
    assert.ok(!secretsIn(result).includes(REAL.keyId));
  });
});
