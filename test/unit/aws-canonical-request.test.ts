import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  awsUriEncode,
  canonicalHeaders,
  canonicalQuery,
  canonicalUri,
  parseRawQuery,
  percentDecode,
} from '../../src/proxy/credentials/aws/canonical.js';
import { parseAuthorizationHeader, parsePresignedQuery } from '../../src/proxy/credentials/aws/authorization.js';
import { sigv4SigningKey } from '../../src/proxy/credentials/aws/sigv4.js';
import { deriveSigV4AKey, sigv4aSign, sigv4aVerify } from '../../src/proxy/credentials/aws/sigv4a.js';

/**
 * The pure pieces: URI and query canonicalisation (Airut's worked examples, items 131-133, where they agree with AWS),
 * header parsing, the SigV4 signing key (AWS's IAM documentation value) and SigV4A key derivation (aws-c-auth's
 * vector, the one Airut fails: item 139).
 */

void describe('canonical URI', () => {
  const cases: Array<[string, Parameters<typeof canonicalUri>[1], string]> = [
    ['/my path/file', 'double-normalized', '/my%20path/file'], // a raw space on the wire is encoded once
    ['/my%20path/file', 'double-normalized', '/my%2520path/file'], // Airut: non-S3 `/my path/file` → `/my%2520path/file`
    ['/my%20path/file', 'as-is', '/my%20path/file'], // Airut: S3 → `/my%20path/file`
    ['/model/x-v1%3A0/invoke', 'double-normalized', '/model/x-v1%253A0/invoke'],
    ['/bucket/key%3Avalue', 'as-is', '/bucket/key%3Avalue'],
    ['/key-%E4%BD%A0', 'as-is', '/key-%E4%BD%A0'],
    ['/key-你', 'reencoded', '/key-%E4%BD%A0'],
    ['/bucket/key%3avalue', 'reencoded', '/bucket/key%3Avalue'],
    ['/a//b/./c/../d/', 'double-normalized', '/a/b/d/'], // AWS keeps the trailing slash; Airut drops it
    ['/a//b/./c/../d/', 'as-is', '/a//b/./c/../d/'], // S3 keeps `//`, `.` and `..`
    ['//example//', 'double', '//example//'],
    ['', 'as-is', '/'],
  ];
  for (const [path, style, expected] of cases) {
    void it(`${style}: ${JSON.stringify(path)} → ${expected}`, () => assert.equal(canonicalUri(path, style), expected));
  }

  void it('encodes every byte except the unreserved set, upper-case hex', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const encoded = awsUriEncode(Buffer.from(bytes), false);
        assert.match(encoded, /^(?:[A-Za-z0-9\-._~]|%[0-9A-F]{2})*$/);
        assert.ok(percentDecode(encoded).equals(Buffer.from(bytes)));
      }),
    );
  });
});

void describe('canonical query', () => {
  void it('sorts by name then value and re-encodes each once', () => {
    const params = parseRawQuery('b=2&a=z&a=y&%E1%88%B4=1&c&d=');
    assert.equal(canonicalQuery(params, { plusAsSpace: false }), '%E1%88%B4=1&a=y&a=z&b=2&c=&d=');
  });

  void it('reads + as AWS does (a plus) or as Airut does (a space), by choice', () => {
    const params = parseRawQuery('a=b+c&z=&y&A=1');
    assert.equal(canonicalQuery(params, { plusAsSpace: true }), 'A=1&a=b%20c&y=&z='); // Airut item 133
    assert.equal(canonicalQuery(params, { plusAsSpace: false }), 'A=1&a=b%2Bc&y=&z=');
  });

  void it('leaves out excluded parameters (X-Amz-Signature of a presigned URL)', () => {
    const params = parseRawQuery('X-Amz-Signature=abc&a=1');
    assert.equal(canonicalQuery(params, { plusAsSpace: false, exclude: (n) => n === 'X-Amz-Signature' }), 'a=1');
  });
});

void describe('canonical headers', () => {
  const headers: Array<[string, string]> = [
    ['My-Header1', 'value4'],
    ['my-header1', '  value1   with  space '],
    ['Host', 'example.amazonaws.com'],
  ];
  void it('joins repeated values in wire order, trimmed and folded (AWS)', () => {
    assert.equal(
      canonicalHeaders(headers, ['host', 'my-header1', 'x-missing'], { sortDuplicates: false }),
      'host:example.amazonaws.com\nmy-header1:value4,value1 with space\nx-missing:\n',
    );
  });
  void it('or sorted, as Airut does (item 127)', () => {
    assert.equal(
      canonicalHeaders(headers, ['my-header1'], { sortDuplicates: true }),
      'my-header1:value1 with space,value4\n',
    );
  });
});

void describe('signature location parsing', () => {
  void it('parses a SigV4 Authorization header and its scope', () => {
    const parsed = parseAuthorizationHeader(
      'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7',
    );
    assert.deepEqual(parsed && { ...parsed }, {
      algorithm: 'AWS4-HMAC-SHA256',
      accessKeyId: 'AKIDEXAMPLE',
      scope: '20150830/us-east-1/iam/aws4_request',
      scopeParts: ['20150830', 'us-east-1', 'iam', 'aws4_request'],
      service: 'iam',
      region: 'us-east-1',
      signedHeaders: ['content-type', 'host', 'x-amz-date'],
      signature: '5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7',
    });
  });

  void it('parses a SigV4A header, whose scope has no region', () => {
    const parsed = parseAuthorizationHeader(
      'AWS4-ECDSA-P256-SHA256 Credential=AKID/20150830/s3/aws4_request,SignedHeaders=host;x-amz-region-set,Signature=3045aa',
    );
    assert.equal(parsed?.service, 's3');
    assert.equal(parsed?.region, undefined);
  });

  void it('rejects what is not an AWS signature', () => {
    for (const value of [
      'Bearer AKIAXXXXXXXXXXXXXXXX',
      'AWS AKID:signature',
      'AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=host',
      'AWS4-HMAC-SHA256 Credential=AKID/2015/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=ab',
      'AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/other, SignedHeaders=host, Signature=ab',
      'AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=xyz',
      'x AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=ab',
    ]) {
      assert.equal(parseAuthorizationHeader(value), null, value);
    }
  });

  void it('parses a presigned query and defaults X-Amz-SignedHeaders to host', () => {
    const parsed = parsePresignedQuery(
      parseRawQuery(
        'X-Amz-Credential=AKID%2F20150830%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-Signature=ab',
      ),
    );
    assert.equal(parsed?.accessKeyId, 'AKID');
    assert.deepEqual(parsed?.signedHeaders, ['host']);
    assert.equal(parsePresignedQuery(parseRawQuery('X-Amz-Credential=AKID&X-Amz-Signature=ab')), null);
  });
});

void describe('signing keys', () => {
  void it('derives the SigV4 signing key of AWS’s IAM documentation example', () => {
    const key = sigv4SigningKey('wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', [
      '20120215',
      'us-east-1',
      'iam',
      'aws4_request',
    ]);
    assert.equal(key.toString('hex'), 'f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d');
  });

  const vectors = JSON.parse(
    readFileSync(join(import.meta.dirname, '../vectors/aws-sigv4a-key-derivation.json'), 'utf8'),
  ) as {
    cases: Array<{
      access_key_id: string;
      secret_access_key: string;
      expected_private_key_hex: string;
      expected_public_x_hex: string;
      expected_public_y_hex: string;
    }>;
  };
  for (const v of vectors.cases) {
    void it(`derives AWS’s SigV4A key pair for ${v.access_key_id} (Airut D5)`, () => {
      const pair = deriveSigV4AKey(v.access_key_id, v.secret_access_key);
      assert.equal(pair.d.toString('hex'), v.expected_private_key_hex);
      assert.equal(pair.x.toString('hex'), v.expected_public_x_hex);
      assert.equal(pair.y.toString('hex'), v.expected_public_y_hex);
    });
  }

  void it('signs SigV4A as DER over one SHA-256 of the string to sign, verifiable only by the right key', () => {
    const pair = deriveSigV4AKey('AKID', 'secret');
    const other = deriveSigV4AKey('AKID', 'other-secret');
    const signature = sigv4aSign(pair, 'string to sign');
    assert.match(signature, /^30[0-9a-f]{2}02/);
    assert.ok(sigv4aVerify(pair.publicKey, 'string to sign', signature));
    assert.ok(!sigv4aVerify(other.publicKey, 'string to sign', signature));
    assert.ok(!sigv4aVerify(pair.publicKey, 'string to sign!', signature));
    assert.ok(!sigv4aVerify(pair.publicKey, 'string to sign', 'zz'));
  });
});
