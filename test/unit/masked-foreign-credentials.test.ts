import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { MaskedCredential } from '../../src/protocol/proxy-config.js';
import { applyMaskedSecrets } from '../../src/proxy/credentials/masked.js';
import type { RequestHead } from '../../src/proxy/credentials/types.js';

/**
 * The sandbox is the attacker: it knows its surrogates and holds tokens of its own. On a scoped host, the only
 * credential that may reach the upstream in a secret's exact header is the real value the proxy put there.
 */

const REAL = 'ghp_R3alR3alR3alR3alR3alR3alR3alR3alR3al';
const SURROGATE = 'ghp_Surr0gateSurr0gateSurr0gateSurr0gat';
const ATTACKER = 'ghp_Att4ckerAtt4ckerAtt4ckerAtt4ckerAtt4';

const gh: MaskedCredential = {
  name: 'GH_TOKEN',
  surrogate: SURROGATE,
  value: REAL,
  scopes: ['api.github.com', 'github.com'],
  headers: ['Authorization'],
  allowForeignCredentials: false,
};

const npm: MaskedCredential = {
  name: 'NPM_TOKEN',
  surrogate: 'npm_Surr0gateNpmSurr0gateNpmSurr0gateNp',
  value: 'npm_R3alNpmR3alNpmR3alNpmR3alNpmR3alNpm',
  scopes: ['registry.npmjs.org'],
  headers: ['Authorization'],
  allowForeignCredentials: false,
};

function head(headers: Array<[string, string]>, host = 'api.github.com'): RequestHead {
  return { method: 'POST', host, hostHeader: host, target: '/repos/o/r/git/refs', headers };
}

const basic = (userPass: string): string => `Basic ${Buffer.from(userPass, 'utf8').toString('base64')}`;

function authValues(out: { headers: Array<[string, string]> }): string[] {
  return out.headers.filter(([n]) => n.toLowerCase() === 'authorization').map(([, v]) => v);
}

void describe('a foreign credential on a scoped host is stripped', () => {
  const foreign: Array<[string, string]> = [
    ['Bearer token', `Bearer ${ATTACKER}`],
    ['token scheme', `token ${ATTACKER}`],
    ['Basic with the attacker token as password', basic(`x-access-token:${ATTACKER}`)],
    ['invalid base64', 'Basic !!!not-base64!!!'],
    ['non-canonical base64 (stray bits)', 'Basic YR=='],
    ['base64 of bytes that are not UTF-8', `Basic ${Buffer.from([0x78, 0x3a, 0xff, 0xfe]).toString('base64')}`],
    ['Basic holding the bare surrogate without a colon', basic(SURROGATE)],
    ['empty value', ''],
  ];
  for (const [what, value] of foreign) {
    void it(what, () => {
      const out = applyMaskedSecrets(head([['Authorization', value]]), [gh]);
      assert.deepEqual(authValues(out), []);
      assert.deepEqual(out.annotations, ['dropped: 1']);
      assert.equal(out.events.length, 1);
      assert.match(out.events[0]!, /^STRIPPED header 'authorization' from POST https:\/\/api\.github\.com\//);
    });
  }

  void it('every entry of the header goes, whatever the name case', () => {
    const out = applyMaskedSecrets(
      head([
        ['Authorization', `Bearer ${ATTACKER}`],
        ['AUTHORIZATION', `token ${ATTACKER}`],
        ['Accept', '*/*'],
        ['authorization', basic(`u:${ATTACKER}`)],
      ]),
      [gh],
    );
    assert.deepEqual(out.headers, [['Accept', '*/*']]);
    assert.deepEqual(out.annotations, ['dropped: 1']);
  });

  void it('a surrogate of another secret (scoped elsewhere) counts as foreign', () => {
    const out = applyMaskedSecrets(head([['Authorization', `Bearer ${npm.surrogate}`]]), [gh, npm]);
    assert.deepEqual(authValues(out), []);
    assert.deepEqual(out.annotations, ['dropped: 1']);
  });

  void it("but another secret's surrogate in a header this host's secret does not name is forwarded as is", () => {
    const out = applyMaskedSecrets(head([['X-Npm-Token', npm.surrogate]]), [gh, { ...npm, headers: ['X-Npm-Token'] }]);
    assert.deepEqual(out.headers, [['X-Npm-Token', npm.surrogate]]);
    assert.deepEqual(out.annotations, []);
  });

  void it('Basic with the surrogate as username and the attacker token as password is not swapped, it is stripped', () => {
    // Servers that read the password (GitHub does, for tokens) would authenticate the attacker's token.
    const out = applyMaskedSecrets(head([['Authorization', basic(`${SURROGATE}:${ATTACKER}`)]]), [gh]);
    assert.deepEqual(authValues(out), []);
    assert.deepEqual(out.annotations, ['dropped: 1']);
  });

  void it('the strip holds on every host of the scope list', () => {
    const out = applyMaskedSecrets(head([['Authorization', `Bearer ${ATTACKER}`]], 'github.com'), [gh]);
    assert.deepEqual(authValues(out), []);
  });
});

void describe('duplicate credential headers cannot smuggle a second value', () => {
  const orders: Array<[string, Array<[string, string]>]> = [
    [
      'attacker first, surrogate second',
      [
        ['Authorization', `Bearer ${ATTACKER}`],
        ['Authorization', `Bearer ${SURROGATE}`],
      ],
    ],
    [
      'surrogate first, attacker second',
      [
        ['Authorization', `Bearer ${SURROGATE}`],
        ['Authorization', `Bearer ${ATTACKER}`],
      ],
    ],
    [
      'three entries in mixed case',
      [
        ['authorization', basic(`x:${ATTACKER}`)],
        ['AUTHORIZATION', `Bearer ${SURROGATE}`],
        ['Authorization', `token ${ATTACKER}`],
      ],
    ],
    [
      'the surrogate twice and the attacker between',
      [
        ['Authorization', `Bearer ${SURROGATE}`],
        ['Authorization', `Bearer ${ATTACKER}`],
        ['Authorization', `Bearer ${SURROGATE}`],
      ],
    ],
  ];
  for (const [what, headers] of orders) {
    void it(what, () => {
      const out = applyMaskedSecrets(head([...headers, ['Accept', '*/*']]), [gh]);
      const values = authValues(out);
      assert.equal(values.length, 1);
      assert.ok(values[0]!.includes(REAL) || values[0]!.startsWith('Basic '));
      assert.ok(!out.headers.some(([, v]) => v.includes(ATTACKER)), 'the attacker token survived');
      assert.deepEqual(out.annotations, ['masked: 1']);
      assert.deepEqual(out.events, [
        `COLLAPSED ${headers.length} duplicate 'authorization' headers in POST https://api.github.com/repos/o/r/git/refs (duplicate credential headers removed)`,
      ]);
    });
  }

  void it('the surviving entry sits where the first entry of that name was', () => {
    const out = applyMaskedSecrets(
      head([
        ['Authorization', `Bearer ${ATTACKER}`],
        ['Accept', '*/*'],
        ['Authorization', `Bearer ${SURROGATE}`],
      ]),
      [gh],
    );
    assert.deepEqual(out.headers, [
      ['Authorization', `Bearer ${REAL}`],
      ['Accept', '*/*'],
    ]);
  });
});

void describe('when foreign credentials are kept', () => {
  void it('allow_foreign_credentials keeps a foreign token', () => {
    const out = applyMaskedSecrets(head([['Authorization', `Bearer ${ATTACKER}`]]), [
      { ...gh, allowForeignCredentials: true },
    ]);
    assert.deepEqual(authValues(out), [`Bearer ${ATTACKER}`]);
    assert.deepEqual(out.annotations, []);
  });

  void it('but duplicates still collapse when one carries the surrogate', () => {
    const out = applyMaskedSecrets(
      head([
        ['Authorization', `Bearer ${ATTACKER}`],
        ['Authorization', `Bearer ${SURROGATE}`],
      ]),
      [{ ...gh, allowForeignCredentials: true }],
    );
    assert.deepEqual(authValues(out), [`Bearer ${REAL}`]);
  });

  void it('glob header patterns never strip', () => {
    const scanEverywhere = { ...gh, headers: ['*'] };
    const headers: Array<[string, string]> = [
      ['Authorization', `Bearer ${ATTACKER}`],
      ['X-Api-Key', ATTACKER],
    ];
    const out = applyMaskedSecrets(head(headers), [scanEverywhere]);
    assert.deepEqual(out.headers, headers);
    assert.deepEqual(out.annotations, []);
  });

  void it('an exact pattern strips even when a glob pattern of the same secret also matches', () => {
    const both = { ...gh, headers: ['X-*', 'Authorization'] };
    const out = applyMaskedSecrets(
      head([
        ['Authorization', `Bearer ${ATTACKER}`],
        ['X-Api-Key', ATTACKER],
      ]),
      [both],
    );
    assert.deepEqual(out.headers, [['X-Api-Key', ATTACKER]]);
    assert.deepEqual(out.annotations, ['dropped: 1']);
  });

  void it('a header swapped by one secret is not stripped by another secret that names it too', () => {
    const second = { ...npm, scopes: ['api.github.com'] };
    const out = applyMaskedSecrets(head([['Authorization', `Bearer ${SURROGATE}`]]), [second, gh]);
    assert.deepEqual(authValues(out), [`Bearer ${REAL}`]);
    assert.deepEqual(out.annotations, ['masked: 1']);
  });

  void it('one secret allowing foreign credentials does not stop another from stripping', () => {
    const lenient = { ...npm, scopes: ['api.github.com'], allowForeignCredentials: true };
    const out = applyMaskedSecrets(head([['Authorization', `Bearer ${ATTACKER}`]]), [lenient, gh]);
    assert.deepEqual(authValues(out), []);
  });
});

void describe('no value is ever logged', () => {
  const headerName = fc.constantFrom('Authorization', 'authorization', 'AUTHORIZATION', 'X-Api-Key', 'Accept');
  const headerValue = fc.oneof(
    fc.constantFrom(
      `Bearer ${SURROGATE}`,
      `token ${SURROGATE}`,
      SURROGATE,
      `Bearer ${ATTACKER}`,
      basic(`x-access-token:${SURROGATE}`),
      basic(`${SURROGATE}:`),
      basic(`${SURROGATE}:${ATTACKER}`),
      basic(`x:${ATTACKER}`),
      `Bearer ${npm.surrogate}`,
    ),
    fc.string({ maxLength: 30 }).map((s) => `${s}${SURROGATE}${s}`),
    fc.string({ maxLength: 30 }),
  );
  const request = fc.record({
    host: fc.constantFrom('api.github.com', 'github.com', 'evil.example', 'registry.npmjs.org'),
    headers: fc.array(fc.tuple(headerName, headerValue), { maxLength: 6 }),
  });

  void it('property: events and annotations never hold a real value, a surrogate or an attacker token', () => {
    fc.assert(
      fc.property(request, ({ host, headers }) => {
        const out = applyMaskedSecrets(head(headers, host), [gh, npm]);
        for (const line of [...out.events, ...out.annotations]) {
          for (const value of [REAL, npm.value, SURROGATE, npm.surrogate, ATTACKER]) {
            assert.ok(!line.includes(value), `logged a value: ${line}`);
          }
        }
      }),
      { numRuns: 3000 },
    );
  });

  void it('property: on a scoped host at most one Authorization survives, and only one the proxy filled', () => {
    fc.assert(
      fc.property(request, ({ host, headers }) => {
        const out = applyMaskedSecrets(head(headers, host), [gh, npm]);
        const inScope = host !== 'evil.example';
        if (!inScope) {
          assert.deepEqual(out.headers, headers);
          return;
        }
        const values = authValues(out);
        assert.ok(values.length <= 1);
        const real = host === 'registry.npmjs.org' ? npm.value : REAL;
        for (const value of values) {
          const decoded = value.startsWith('Basic ') ? Buffer.from(value.slice(6), 'base64').toString('utf8') : value;
          assert.ok(decoded.includes(real), `a value the proxy did not fill reached the upstream: ${value}`);
          assert.ok(!decoded.includes(ATTACKER), 'the attacker token rode along');
        }
        // A real value reaches only its own scope, and only in Authorization.
        for (const [name, value] of out.headers) {
          const other = host === 'registry.npmjs.org' ? REAL : npm.value;
          assert.ok(!value.includes(other));
          if (name.toLowerCase() !== 'authorization') assert.ok(!value.includes(real));
        }
      }),
      { numRuns: 3000 },
    );
  });
});
