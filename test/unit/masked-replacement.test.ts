import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MaskedCredential } from '../../src/protocol/proxy-wire.js';
import { applyMaskedSecrets, readCredential } from '../../src/proxy/credentials/masked.js';
import type { RequestHead } from '../../src/proxy/credentials/types.js';

/** Fixtures: random-looking values, none of them a real credential. */
const GH_REAL = 'ghp_R3alR3alR3alR3alR3alR3alR3alR3alR3al';
const GH_SURROGATE = 'ghp_Surr0gateSurr0gateSurr0gateSurr0gat';

function secret(over: Partial<MaskedCredential> = {}): MaskedCredential {
  return {
    name: 'GH_TOKEN',
    surrogate: GH_SURROGATE,
    value: GH_REAL,
    scopes: ['api.github.com', 'github.com'],
    headers: ['Authorization'],
    allowForeignCredentials: false,
    ...over,
  };
}

function head(headers: Array<[string, string]>, over: Partial<RequestHead> = {}): RequestHead {
  return {
    method: 'GET',
    host: 'api.github.com',
    hostHeader: 'api.github.com',
    port: over.scheme === 'http' ? 80 : 443,
    target: '/user',
    headers,
    ...over,
  };
}

const basic = (userPass: string): string => `Basic ${Buffer.from(userPass, 'utf8').toString('base64')}`;

void describe("Airut's verified vectors (airut-behaviour.md item 122)", () => {
  void it('Bearer surrogate → Bearer real, [masked: 1]', () => {
    const out = applyMaskedSecrets(head([['Authorization', `Bearer ${GH_SURROGATE}`]]), [secret()]);
    assert.deepEqual(out.headers, [['Authorization', `Bearer ${GH_REAL}`]]);
    assert.deepEqual(out.annotations, ['masked: 1']);
    assert.deepEqual(out.events, []);
  });

  void it("git's Basic x-access-token:surrogate → x-access-token:real, re-encoded", () => {
    const out = applyMaskedSecrets(head([['Authorization', basic(`x-access-token:${GH_SURROGATE}`)]]), [secret()]);
    assert.deepEqual(out.headers, [['Authorization', basic(`x-access-token:${GH_REAL}`)]]);
    assert.deepEqual(out.annotations, ['masked: 1']);
  });

  void it('Bearer attacker → header removed, [dropped: 1], STRIPPED line', () => {
    const out = applyMaskedSecrets(head([['Authorization', 'Bearer attacker']]), [secret()]);
    assert.deepEqual(out.headers, []);
    assert.deepEqual(out.annotations, ['dropped: 1']);
    assert.deepEqual(out.events, [
      "STRIPPED header 'authorization' from GET https://api.github.com/user (foreign credential blocked)",
    ]);
  });

  void it('[Authorization: attacker, X-A: 1, authorization: Bearer S] → one Authorization with the real value', () => {
    const out = applyMaskedSecrets(
      head([
        ['Authorization', 'attacker'],
        ['X-A', '1'],
        ['authorization', `Bearer ${GH_SURROGATE}`],
      ]),
      [secret()],
    );
    // Airut re-adds the survivor at the end; we keep it where the first entry was (same set of headers).
    assert.deepEqual(out.headers, [
      ['authorization', `Bearer ${GH_REAL}`],
      ['X-A', '1'],
    ]);
    assert.deepEqual(out.annotations, ['masked: 1']);
    assert.deepEqual(out.events, [
      "COLLAPSED 2 duplicate 'authorization' headers in GET https://api.github.com/user (duplicate credential headers removed)",
    ]);
  });
});

void describe('where the surrogate is replaced', () => {
  const cases: Array<[string, string, string]> = [
    ['bare token', GH_SURROGATE, GH_REAL],
    ['after `token`', `token ${GH_SURROGATE}`, `token ${GH_REAL}`],
    ['after `Bearer`', `Bearer ${GH_SURROGATE}`, `Bearer ${GH_REAL}`],
    ['after a lower-case scheme', `bearer ${GH_SURROGATE}`, `bearer ${GH_REAL}`],
    ['after a hyphenated scheme word', `SCRAM-SHA-256 ${GH_SURROGATE}`, `SCRAM-SHA-256 ${GH_REAL}`],
    ['with surrounding whitespace (forwarded trimmed)', ` \tBearer ${GH_SURROGATE} \t`, `Bearer ${GH_REAL}`],
    ['with tabs and spaces after the scheme (one space forwarded)', `token \t ${GH_SURROGATE}`, `token ${GH_REAL}`],
  ];
  for (const [what, sent, forwarded] of cases) {
    void it(what, () => {
      const out = applyMaskedSecrets(head([['Authorization', sent]]), [secret()]);
      assert.deepEqual(out.headers, [['Authorization', forwarded]]);
      assert.deepEqual(out.annotations, ['masked: 1']);
    });
  }

  void it('in the password of Basic credentials, whatever the username', () => {
    const out = applyMaskedSecrets(head([['Authorization', basic(`octocat:${GH_SURROGATE}`)]]), [secret()]);
    assert.deepEqual(out.headers, [['Authorization', basic(`octocat:${GH_REAL}`)]]);
  });

  void it('in the username of Basic credentials when the password is empty or the x-oauth-basic placeholder', () => {
    for (const pass of ['', 'x-oauth-basic', 'X-OAuth-Basic']) {
      const out = applyMaskedSecrets(head([['Authorization', basic(`${GH_SURROGATE}:${pass}`)]]), [secret()]);
      assert.deepEqual(out.headers, [['Authorization', basic(`${GH_REAL}:${pass}`)]]);
    }
  });

  void it('in a lower-case `basic` scheme, re-emitted in canonical form', () => {
    const encoded = Buffer.from(`x-access-token:${GH_SURROGATE}`).toString('base64');
    const out = applyMaskedSecrets(head([['Authorization', `basic  ${encoded}`]]), [secret()]);
    assert.deepEqual(out.headers, [['Authorization', basic(`x-access-token:${GH_REAL}`)]]);
  });

  void it('after `Basic` when the real value is itself base64 (npm `_auth`)', () => {
    const s = secret({ value: Buffer.from('me:npm-password').toString('base64'), surrogate: 'SurrogateForNpmAuth12' });
    const out = applyMaskedSecrets(head([['Authorization', 'Basic SurrogateForNpmAuth12']]), [s]);
    assert.deepEqual(out.headers, [['Authorization', `Basic ${s.value}`]]);
    assert.deepEqual(out.annotations, ['masked: 1']);
  });

  void it('in unpadded base64 (re-encoded padded)', () => {
    const encoded = Buffer.from(`x:${GH_SURROGATE}`).toString('base64').replace(/=+$/, '');
    assert.notEqual(encoded.length % 4, 0, 'fixture must need padding');
    const out = applyMaskedSecrets(head([['Authorization', `Basic ${encoded}`]]), [secret()]);
    assert.deepEqual(out.headers, [['Authorization', basic(`x:${GH_REAL}`)]]);
  });

  void it('with the real value containing UTF-8 inside Basic (encoded as UTF-8)', () => {
    const s = secret({ value: 'pässwörd-ü', surrogate: 'abcdefghij' });
    const out = applyMaskedSecrets(head([['Authorization', basic('me:abcdefghij')]]), [s]);
    assert.deepEqual(out.headers, [['Authorization', basic('me:pässwörd-ü')]]);
  });

  void it('literally, even when the real value holds `$&`, `$1` or `$$` (no replacement-pattern expansion)', () => {
    const s = secret({ value: 'a$&b$1c$$d$`e', surrogate: 'zzzzzzzzzzzzz' });
    const out = applyMaskedSecrets(head([['Authorization', 'Bearer zzzzzzzzzzzzz']]), [s]);
    assert.deepEqual(out.headers, [['Authorization', 'Bearer a$&b$1c$$d$`e']]);
  });

  void it('with header patterns matched case-insensitively, including globs', () => {
    const s = secret({ headers: ['AUTHORIZATION', 'x-*-TOKEN'] });
    const out = applyMaskedSecrets(
      head([
        ['authorization', `Bearer ${GH_SURROGATE}`],
        ['X-Api-Token', GH_SURROGATE],
      ]),
      [s],
    );
    assert.deepEqual(out.headers, [
      ['authorization', `Bearer ${GH_REAL}`],
      ['X-Api-Token', GH_REAL],
    ]);
    // One per header name the secret was swapped into.
    assert.deepEqual(out.annotations, ['masked: 2']);
  });

  void it('with scopes matched case-insensitively and as globs on the normalised host', () => {
    const s = secret({ scopes: ['*.GitHub.COM'] });
    const out = applyMaskedSecrets(head([['Authorization', `Bearer ${GH_SURROGATE}`]]), [s]);
    assert.deepEqual(out.headers, [['Authorization', `Bearer ${GH_REAL}`]]);
    const apex = applyMaskedSecrets(head([['Authorization', `Bearer ${GH_SURROGATE}`]], { host: 'github.com' }), [s]);
    assert.deepEqual(apex.headers, [['Authorization', `Bearer ${GH_SURROGATE}`]], '*.github.com excludes the apex');
  });

  void it('with scopes matched on host and port: the default port unless the scope names one', () => {
    const swapped = (scopes: string[], over: Partial<RequestHead>) =>
      applyMaskedSecrets(head([['Authorization', `Bearer ${GH_SURROGATE}`]], over), [secret({ scopes })])
        .headers[0]![1];
    const real = `Bearer ${GH_REAL}`;
    assert.equal(swapped(['api.github.com'], { port: 443 }), real);
    assert.equal(swapped(['api.github.com'], { port: 8443 }), `Bearer ${GH_SURROGATE}`, 'another port is out of scope');
    assert.equal(swapped(['api.github.com:8443'], { port: 8443 }), real);
    assert.equal(swapped(['api.github.com:8443'], { port: 443 }), `Bearer ${GH_SURROGATE}`);
    assert.equal(swapped(['*.github.com:8443'], { port: 8443 }), real);
  });

  void it('for two secrets in one Basic header (username secret and password secret)', () => {
    const user = secret({
      name: 'REG_USER',
      surrogate: 'userSurrogate1',
      value: 'realuser01',
      scopes: ['reg.example'],
    });
    const pass = secret({
      name: 'REG_PASS',
      surrogate: 'passSurrogate1',
      value: 'realpass01',
      scopes: ['reg.example'],
    });
    const out = applyMaskedSecrets(
      head([['Authorization', basic('userSurrogate1:passSurrogate1')]], { host: 'reg.example' }),
      [user, pass],
    );
    assert.deepEqual(out.headers, [['Authorization', basic('realuser01:realpass01')]]);
    assert.deepEqual(out.annotations, ['masked: 2']);
  });

  void it('in one pass: a real value that contains another surrogate is not rescanned', () => {
    const a = secret({ name: 'A', surrogate: 'AAAAAAAAAAAA', value: 'x-BBBBBBBBBBBB-x', headers: ['X-Key'] });
    const b = secret({ name: 'B', surrogate: 'BBBBBBBBBBBB', value: 'leaked-b-real', headers: ['X-Key'] });
    const out = applyMaskedSecrets(head([['X-Key', 'AAAAAAAAAAAA']]), [a, b]);
    assert.deepEqual(out.headers, [['X-Key', 'x-BBBBBBBBBBBB-x']]);
  });

  void it('the longer of two overlapping surrogates wins', () => {
    const short = secret({ name: 'S', surrogate: 'abcdefgh', value: 'short-real', headers: ['X-Key'] });
    const long = secret({ name: 'L', surrogate: 'abcdefgh1234', value: 'long-real', headers: ['X-Key'] });
    const out = applyMaskedSecrets(head([['X-Key', 'abcdefgh1234']]), [short, long]);
    assert.deepEqual(out.headers, [['X-Key', 'long-real']]);
  });
});

void describe('where the surrogate is never replaced', () => {
  void it('on a host outside the scopes: forwarded unchanged, nothing stripped, nothing logged', () => {
    const headers: Array<[string, string]> = [
      ['Authorization', `Bearer ${GH_SURROGATE}`],
      ['X-Other', 'Bearer attacker'],
    ];
    const out = applyMaskedSecrets(head(headers, { host: 'evil.example', hostHeader: 'evil.example' }), [secret()]);
    assert.deepEqual(out.headers, headers);
    assert.deepEqual(out.annotations, []);
    assert.deepEqual(out.events, []);
  });

  void it('on a scope lookalike: subdomain of a bare scope, or a suffix-sharing name', () => {
    for (const host of ['evil.api.github.com', 'api.github.com.evil.example', 'xapi.github.com']) {
      const out = applyMaskedSecrets(head([['Authorization', `Bearer ${GH_SURROGATE}`]], { host }), [secret()]);
      assert.deepEqual(out.headers, [['Authorization', `Bearer ${GH_SURROGATE}`]], host);
    }
  });

  void it('in the target (path and query): the target is returned untouched', () => {
    const target = `/search?q=${GH_SURROGATE}&token=${GH_SURROGATE}`;
    const out = applyMaskedSecrets(head([['Authorization', `Bearer ${GH_SURROGATE}`]], { target }), [secret()]);
    assert.equal(out.target, target);
    assert.equal(out.bodyTransform, undefined, 'bodies are never rewritten');
  });

  void it('in a header the secret does not name', () => {
    const out = applyMaskedSecrets(
      head([
        ['X-Forwarded-Token', GH_SURROGATE],
        ['Cookie', `session=${GH_SURROGATE}`],
      ]),
      [secret()],
    );
    assert.deepEqual(out.headers, [
      ['X-Forwarded-Token', GH_SURROGATE],
      ['Cookie', `session=${GH_SURROGATE}`],
    ]);
    assert.deepEqual(out.annotations, []);
  });

  void it('with no secrets, or a secret whose surrogate is empty (which would otherwise match every value)', () => {
    const headers: Array<[string, string]> = [['Authorization', 'Bearer anything']];
    assert.deepEqual(applyMaskedSecrets(head(headers), []).headers, headers);
    assert.equal(readCredential('Bearer anything', [secret({ surrogate: '' })]).kind, 'none');
  });

  void it('a secret whose value could split a header line is never injected (and still strips)', () => {
    const broken = secret({ value: 'real\r\nX-Injected: 1' });
    const out = applyMaskedSecrets(head([['Authorization', `Bearer ${GH_SURROGATE}`]]), [broken]);
    assert.deepEqual(out.headers, []);
    assert.deepEqual(out.annotations, ['dropped: 1']);
  });
});

void describe('what stays as it was', () => {
  void it('other headers keep their names, values and order', () => {
    const out = applyMaskedSecrets(
      head([
        ['Accept', 'application/json'],
        ['Authorization', `Bearer ${GH_SURROGATE}`],
        ['User-Agent', 'git/2.39'],
        ['accept', 'text/plain'],
      ]),
      [secret()],
    );
    assert.deepEqual(out.headers, [
      ['Accept', 'application/json'],
      ['Authorization', `Bearer ${GH_REAL}`],
      ['User-Agent', 'git/2.39'],
      ['accept', 'text/plain'],
    ]);
  });

  void it('a request without credential headers on a scoped host is untouched', () => {
    const headers: Array<[string, string]> = [['Accept', '*/*']];
    const out = applyMaskedSecrets(head(headers), [secret()]);
    assert.equal(out.headers, headers);
    assert.deepEqual(out.annotations, []);
    assert.deepEqual(out.events, []);
  });
});

void describe('clear-text requests (scheme http) never carry a real value', () => {
  void it('the surrogate is recognised but forwarded as it is, with a NOT REPLACED line', () => {
    const out = applyMaskedSecrets(head([['Authorization', `Bearer ${GH_SURROGATE}`]], { scheme: 'http' }), [secret()]);
    assert.deepEqual(out.headers, [['Authorization', `Bearer ${GH_SURROGATE}`]]);
    assert.deepEqual(out.annotations, []);
    assert.deepEqual(out.events, [
      "NOT REPLACED masked secret in 'authorization' for GET http://api.github.com/user (real values are only sent over HTTPS)",
    ]);
  });

  void it('Basic credentials stay encoded surrogates too', () => {
    const value = basic(`x-access-token:${GH_SURROGATE}`);
    const out = applyMaskedSecrets(head([['Authorization', value]], { scheme: 'http' }), [secret()]);
    assert.deepEqual(out.headers, [['Authorization', value]]);
  });

  void it('duplicates beside the surrogate still collapse, and foreign tokens are still stripped', () => {
    const dup = applyMaskedSecrets(
      head(
        [
          ['Authorization', 'Bearer attacker'],
          ['Authorization', `Bearer ${GH_SURROGATE}`],
        ],
        { scheme: 'http' },
      ),
      [secret()],
    );
    assert.deepEqual(dup.headers, [['Authorization', `Bearer ${GH_SURROGATE}`]]);
    const foreign = applyMaskedSecrets(head([['Authorization', 'Bearer attacker']], { scheme: 'http' }), [secret()]);
    assert.deepEqual(foreign.headers, []);
    assert.deepEqual(foreign.events, [
      "STRIPPED header 'authorization' from GET http://api.github.com/user (foreign credential blocked)",
    ]);
  });

  void it('an explicit https scheme behaves as the default', () => {
    const out = applyMaskedSecrets(head([['Authorization', `Bearer ${GH_SURROGATE}`]], { scheme: 'https' }), [
      secret(),
    ]);
    assert.deepEqual(out.headers, [['Authorization', `Bearer ${GH_REAL}`]]);
  });
});
