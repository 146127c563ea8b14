import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  AWS_SECRET_CHARSET,
  KNOWN_TOKEN_PREFIXES,
  mintAwsSurrogates,
  mintSurrogate,
  randomString,
  surrogateCharset,
  tokenPrefix,
} from '../../src/protocol/surrogate.js';

const ALNUM = /^[A-Za-z0-9]*$/;

/** Pearson's chi-square statistic of observed counts against a uniform expectation. */
function chiSquare(counts: Map<string, number>, alphabet: string, total: number): number {
  const expected = total / alphabet.length;
  let sum = 0;
  for (const ch of alphabet) {
    const observed = counts.get(ch) ?? 0;
    sum += (observed - expected) ** 2 / expected;
  }
  return sum;
}

function countChars(strings: Iterable<string>): { counts: Map<string, number>; total: number } {
  const counts = new Map<string, number>();
  let total = 0;
  for (const s of strings) {
    for (const ch of s) {
      counts.set(ch, (counts.get(ch) ?? 0) + 1);
      total++;
    }
  }
  return { counts, total };
}

/** Realistic shapes of tokens, by issuer (random bodies; none of these is a real credential). */
const SAMPLES: Array<[string, string]> = [
  ['github_pat_', 'github_pat_11ABCDEFG0aBcDeFgHiJkL_mNoPqRsTuVwXyZ0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH'],
  ['ghp_', 'ghp_aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hI6'],
  ['gho_', 'gho_16C7e42F292c6912E7710c838347Ae178B4a'],
  ['ghs_', 'ghs_16C7e42F292c6912E7710c838347Ae178B4a'],
  ['ghr_', 'ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498'],
  ['ghu_', 'ghu_16C7e42F292c6912E7710c838347Ae178B4a'],
  ['glpat-', 'glpat-xXxX1234yYyY5678zZzZ'],
  ['npm_', 'npm_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789'],
  ['sk-ant-api03-', 'sk-ant-api03-' + 'aB3_dE6-gH9jK2mN5pQ8'.repeat(4) + 'xyzAA'],
  ['sk-ant-', 'sk-ant-sid01-abcdefABCDEF012345'],
  ['sk-proj-', 'sk-proj-abcDEF123_ghiJKL456-mnoPQR789stuVWX'],
  ['sk-', 'sk-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRST'],
  ['xoxb-', 'xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx'],
  ['xoxp-', 'xoxp-123456789012-123456789012-123456789012-0123456789abcdef0123456789abcdef'],
  ['AKIA', 'AKIAIOSFODNN7EXAMPLE'],
  ['ASIA', 'ASIAIOSFODNN7EXAMPLE'],
];

void describe('masked-secret surrogates keep the token format', () => {
  for (const [prefix, real] of SAMPLES) {
    void it(`keeps the ${prefix} prefix, the length and the character classes`, () => {
      const surrogate = mintSurrogate(real);
      assert.equal(tokenPrefix(real), prefix);
      assert.ok(surrogate.startsWith(prefix));
      assert.equal(surrogate.length, real.length);
      assert.notEqual(surrogate, real);
      const charset = surrogateCharset(real.slice(prefix.length));
      for (const ch of surrogate.slice(prefix.length)) assert.ok(charset.includes(ch), `${ch} outside ${charset}`);
    });
  }

  void it('keeps the longest known prefix, not the first listed one that matches', () => {
    assert.equal(tokenPrefix('sk-ant-api03-abc'), 'sk-ant-api03-');
    assert.equal(tokenPrefix('sk-ant-xyz'), 'sk-ant-');
    assert.equal(tokenPrefix('sk-proj-xyz'), 'sk-proj-');
    assert.equal(tokenPrefix('sk-xyz'), 'sk-');
    assert.equal(tokenPrefix('github_pat_x'), 'github_pat_');
    assert.equal(tokenPrefix('plain-token'), '');
    // Case matters: `GHP_` is not GitHub's prefix.
    assert.equal(tokenPrefix('GHP_abc'), '');
  });

  void it('never keeps a prefix that is the whole value, so the surrogate still differs', () => {
    for (const prefix of KNOWN_TOKEN_PREFIXES) {
      assert.notEqual(tokenPrefix(prefix), prefix);
      for (let i = 0; i < 20; i++) {
        const surrogate = mintSurrogate(prefix);
        assert.equal(surrogate.length, prefix.length);
        assert.notEqual(surrogate, prefix);
      }
    }
  });

  void it('builds the charset from the classes present in the rest, as Airut does', () => {
    assert.equal(surrogateCharset('0123456789'), '0123456789');
    assert.equal(surrogateCharset('deadbeef01'), 'abcdefghijklmnopqrstuvwxyz0123456789');
    assert.equal(surrogateCharset('ABCDEF'), 'ABCDEFGHIJKLMNOPQRSTUVWXYZ');
    assert.equal(surrogateCharset('a.b'), 'abcdefghijklmnopqrstuvwxyz-_');
    assert.equal(surrogateCharset('Ab1/+='), 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_');
    assert.equal(surrogateCharset('!!'), '-_');
    assert.equal(surrogateCharset(''), 'abcdefghijklmnopqrstuvwxyz0123456789');
    // Python's str.islower/isupper are Unicode-aware; é is a lowercase letter, not a special character.
    assert.equal(surrogateCharset('é'), 'abcdefghijklmnopqrstuvwxyz');
    assert.equal(surrogateCharset('Ä'), 'ABCDEFGHIJKLMNOPQRSTUVWXYZ');
  });

  void it('counts length in code points, so a non-ASCII secret gets a surrogate of as many characters', () => {
    const surrogate = mintSurrogate('pässwörd😀');
    assert.equal([...surrogate].length, [...'pässwörd😀'].length);
    assert.match(surrogate, /^[a-z_-]+$/);
  });

  void it('refuses an empty value (empty masked values inject nothing)', () => {
    assert.throws(() => mintSurrogate(''), RangeError);
  });

  void it('property: same length, same prefix, charset respected, never equal to the real value', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ minLength: 1, maxLength: 80, unit: 'grapheme-ascii' }),
          fc.string({ minLength: 1, maxLength: 40, unit: 'binary' }),
          fc.tuple(fc.constantFrom(...KNOWN_TOKEN_PREFIXES), fc.string({ maxLength: 60 })).map(([p, r]) => p + r),
        ),
        (real) => {
          const surrogate = mintSurrogate(real);
          const prefix = tokenPrefix(real);
          assert.equal([...surrogate].length, [...real].length);
          assert.ok(surrogate.startsWith(prefix));
          assert.notEqual(surrogate, real);
          const charset = surrogateCharset(real.slice(prefix.length));
          for (const ch of surrogate.slice(prefix.length)) assert.ok(charset.includes(ch));
        },
      ),
      { numRuns: 2000 },
    );
  });

  void it('a one-character secret still gets a surrogate that differs from it, every time', () => {
    for (let i = 0; i < 500; i++) assert.notEqual(mintSurrogate('7'), '7');
  });
});

void describe('surrogates are unpredictable', () => {
  void it('2000 surrogates of one token are all distinct and only the prefix is shared', () => {
    const real = 'ghp_aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hI6';
    const minted = new Set<string>();
    for (let i = 0; i < 2000; i++) minted.add(mintSurrogate(real));
    assert.equal(minted.size, 2000);
  });

  void it('every character of the charset is equally likely at every position (chi-square)', () => {
    const real = 'ghp_aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hI6';
    const charset = surrogateCharset(real.slice(4));
    const bodies = Array.from({ length: 3000 }, () => mintSurrogate(real).slice(4));
    const { counts, total } = countChars(bodies);
    // 61 degrees of freedom: the 1e-6 upper tail starts near 130, so a fair generator fails about once in a million.
    assert.ok(chiSquare(counts, charset, total) < 130, 'character frequencies are not uniform');
    // Positions are independent: the first character alone is uniform too.
    const first = countChars(bodies.map((b) => b[0]!));
    assert.ok(chiSquare(first.counts, charset, first.total) < 130);
  });

  void it('entropy: a 40-character GitHub token surrogate carries 36 × log2(62) ≈ 214 random bits', () => {
    const real = 'ghp_aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hI6';
    const bits = (real.length - 4) * Math.log2(surrogateCharset(real.slice(4)).length);
    assert.ok(bits > 200);
  });
});

void describe('randomString rejection sampling', () => {
  function withRandomFeed<T>(feed: number[], body: () => T): T {
    const crypto = globalThis.crypto;
    const original = crypto.getRandomValues.bind(crypto);
    let next = 0;
    crypto.getRandomValues = <A extends ArrayBufferView | null>(array: A): A => {
      const view = array as unknown as Uint32Array;
      for (let i = 0; i < view.length; i++) view[i] = feed[next++ % feed.length]!;
      return array;
    };
    try {
      return body();
    } finally {
      crypto.getRandomValues = original;
    }
  }

  void it('discards draws at or above the largest multiple of the charset size', () => {
    // 62 × 69273666 = 4294967292: the four values above it would favour the first characters; they must be skipped.
    const charset = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
    const out = withRandomFeed([4294967292, 4294967295, 1, 4294967291], () => randomString(2, charset));
    assert.equal(out, charset[1]! + charset[4294967291 % 62]!);
  });

  void it('is uniform for a charset size that does not divide 2^32', () => {
    const { counts, total } = countChars([randomString(60000, 'abc')]);
    // 2 degrees of freedom: 1e-6 tail is ~27.6.
    assert.ok(chiSquare(counts, 'abc', total) < 27.6);
  });

  void it('produces long strings beyond one getRandomValues call (64 KiB)', () => {
    const s = randomString(40000, 'xy');
    assert.equal(s.length, 40000);
    assert.match(s, /^[xy]+$/);
  });

  void it('rejects impossible requests', () => {
    assert.throws(() => randomString(3, ''), RangeError);
    assert.throws(() => randomString(-1, 'a'), RangeError);
  });
});

void describe('AWS credential surrogates', () => {
  const real = {
    accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
    secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
  };

  void it('key id: 20 characters of A-Z0-9 with the AKIA/ASIA type prefix kept', () => {
    const long = mintAwsSurrogates(real);
    assert.match(long.accessKeyId, /^AKIA[A-Z0-9]{16}$/);
    const temporary = mintAwsSurrogates({ ...real, accessKeyId: 'ASIAY34FZKBOKMUTVV7A' });
    assert.match(temporary.accessKeyId, /^ASIA[A-Z0-9]{16}$/);
    // A non-AWS S3-compatible id (R2: 32 hex) keeps no prefix and still gets the AWS shape.
    const r2 = mintAwsSurrogates({ ...real, accessKeyId: '0123456789abcdef0123456789abcdef' });
    assert.match(r2.accessKeyId, /^[A-Z0-9]{20}$/);
  });

  void it('secret key: 40 characters over the whole base64 alphabet, `/` and `+` included', () => {
    const secrets = Array.from({ length: 2000 }, () => mintAwsSurrogates(real).secretAccessKey);
    for (const s of secrets) assert.match(s, /^[A-Za-z0-9/+]{40}$/);
    const { counts, total } = countChars(secrets);
    assert.ok((counts.get('/') ?? 0) > 0 && (counts.get('+') ?? 0) > 0);
    // 63 degrees of freedom: 1e-6 tail is ~133.
    assert.ok(chiSquare(counts, AWS_SECRET_CHARSET, total) < 133);
  });

  void it('session token: 512 alphanumerics whatever the real length, and none without a real token', () => {
    const short = mintAwsSurrogates({ ...real, sessionToken: 'FwoGZXIvYXdzE' });
    const long = mintAwsSurrogates({ ...real, sessionToken: 'IQoJb3JpZ2luX2VjE'.repeat(70) });
    assert.equal(short.sessionToken!.length, 512);
    assert.equal(long.sessionToken!.length, 512);
    assert.match(short.sessionToken!, ALNUM);
    assert.equal(mintAwsSurrogates({ ...real, sessionToken: '' }).sessionToken, undefined);
    assert.equal(mintAwsSurrogates({ ...real, sessionToken: null }).sessionToken, undefined);
    assert.equal(mintAwsSurrogates(real).sessionToken, undefined);
  });

  void it('fresh per call: two runs never share a surrogate', () => {
    const a = mintAwsSurrogates({ ...real, sessionToken: 'tok' });
    const b = mintAwsSurrogates({ ...real, sessionToken: 'tok' });
    assert.notEqual(a.accessKeyId, b.accessKeyId);
    assert.notEqual(a.secretAccessKey, b.secretAccessKey);
    assert.notEqual(a.sessionToken, b.sessionToken);
  });
});
