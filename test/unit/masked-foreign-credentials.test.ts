import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { MaskedCredential } from '../../src/protocol/proxy-wire.js';
import { applyMaskedSecrets } from '../../src/proxy/credentials/masked.js';
import type { CredentialResult, RequestHead } from '../../src/proxy/credentials/types.js';

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

const HOST = 'api.github.com';
const WHERE = `POST https://${HOST}/repos/o/r/git/refs`;

function head(headers: Array<[string, string]>, host = HOST, scheme?: 'http' | 'https'): RequestHead {
  return {
    method: 'POST',
    host,
    hostHeader: host,
    port: scheme === 'http' ? 80 : 443,
    target: '/repos/o/r/git/refs',
    headers,
    ...(scheme ? { scheme } : {}),
  };
}

const basic = (userPass: string): string => `Basic ${Buffer.from(userPass, 'utf8').toString('base64')}`;

function valuesOf(out: CredentialResult, name: string): string[] {
  return out.headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
}

function authValues(out: CredentialResult): string[] {
  return valuesOf(out, 'authorization');
}

function assertNothingLeaked(out: CredentialResult): void {
  for (const [, value] of out.headers) assert.ok(!value.includes(REAL), 'a real value was forwarded');
  for (const line of [...out.events, ...out.annotations]) {
    for (const secretish of [REAL, SURROGATE, ATTACKER])
      assert.ok(!line.includes(secretish), `logged a value: ${line}`);
  }
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

/*
 * The sandbox chooses every byte around the surrogate. A surrogate is only swapped when the header value is exactly
 * one credential; anything it is dressed up with (a list, a second scheme, a second token) would ride to the
 * upstream beside the real value, so on the secret's own header such a value is stripped, never partially replaced.
 */

const MIXED_STRIPPED = `STRIPPED header 'authorization' from ${WHERE} (foreign credential blocked: surrogate with other content)`;

void describe('a surrogate with other content in an exact-name header is stripped, never partially replaced', () => {
  const attacks: Array<[string, string]> = [
    ['attacker first in a comma list', `Bearer ${ATTACKER}, Bearer ${SURROGATE}`],
    ['attacker last in a comma list', `Bearer ${SURROGATE}, Bearer ${ATTACKER}`],
    ['bare surrogate, then the attacker', `${SURROGATE}, ${ATTACKER}`],
    ['bare attacker token, then the surrogate', `${ATTACKER} ${SURROGATE}`],
    ['a second scheme after the surrogate', `Bearer ${SURROGATE} Bearer ${ATTACKER}`],
    ['a tab and a trailing token', `Bearer ${SURROGATE}\tX`],
    ['the surrogate twice, spaced', `${SURROGATE} ${SURROGATE}`],
    ['the surrogate twice after a scheme', `Bearer ${SURROGATE} ${SURROGATE}`],
    ['the surrogate twice, joined', `${SURROGATE}${SURROGATE}`],
    ['the surrogate twice, joined, after a scheme', `Bearer ${SURROGATE}${SURROGATE}`],
    ['token lists without spaces', `token ${SURROGATE},token ${ATTACKER}`],
    ['the surrogate inside a longer string', `Bearer xx${SURROGATE}yy`],
    ['a trailing comma', `Bearer ${SURROGATE},`],
    ['a scheme word ending in a comma', `Bearer, ${SURROGATE}`],
    ['a non-breaking space instead of a space', `Bearer\u00a0${SURROGATE}`],
    ['two scheme words', `Bearer token ${SURROGATE}`],
    ['a scheme word that looks like a token (underscore)', `my_key ${SURROGATE}`],
    ['a scheme word that starts with a digit', `4ttacker ${SURROGATE}`],
    ['a scheme word longer than any real scheme', `${'A'.repeat(33)} ${SURROGATE}`],
    ['mixed-case schemes in a list', `BEARER ${ATTACKER}, bearer ${SURROGATE}`],
    ['Basic whose decoded password is a comma list', basic(`x-access-token:${SURROGATE},${ATTACKER}`)],
    ['Basic whose decoded password has a second token', basic(`x-access-token:${SURROGATE} ${ATTACKER}`)],
    ['Basic whose decoded password holds the surrogate twice', basic(`x:${SURROGATE}${SURROGATE}`)],
    ['Basic with the surrogate inside the user name', basic(`x${SURROGATE}:${SURROGATE}`)],
    ['Basic with a colon-joined password', basic(`x:${SURROGATE}:${ATTACKER}`)],
    ['Basic with the surrogate as user and the attacker as password', basic(`${SURROGATE}:${ATTACKER}`)],
    ['Basic holding the bare surrogate (no colon)', basic(SURROGATE)],
    ['Basic holding a comma list (no colon)', basic(`${ATTACKER},${SURROGATE}`)],
  ];
  for (const [what, value] of attacks) {
    void it(what, () => {
      const out = applyMaskedSecrets(head([['Authorization', value]]), [gh]);
      assert.deepEqual(valuesOf(out, 'authorization'), []);
      assert.deepEqual(out.annotations, ['dropped: 1']);
      assert.deepEqual(out.events, [MIXED_STRIPPED]);
      assertNothingLeaked(out);
    });
  }

  void it('a Basic credential followed by a list entry (not decodable as one) is stripped too', () => {
    const out = applyMaskedSecrets(head([['Authorization', `${basic(`x:${SURROGATE}`)}, Bearer ${ATTACKER}`]]), [gh]);
    assert.deepEqual(valuesOf(out, 'authorization'), []);
    assert.deepEqual(out.annotations, ['dropped: 1']);
    assertNothingLeaked(out);
  });

  void it('one smuggling entry takes every entry of the name with it, whatever the order and case', () => {
    for (const headers of [
      [
        ['Authorization', `Bearer ${SURROGATE}`],
        ['authorization', `Bearer ${ATTACKER}, Bearer ${SURROGATE}`],
      ],
      [
        ['AUTHORIZATION', `token ${SURROGATE},token ${ATTACKER}`],
        ['Accept', '*/*'],
        ['Authorization', `Bearer ${SURROGATE}`],
      ],
    ] as Array<Array<[string, string]>>) {
      const out = applyMaskedSecrets(head(headers), [gh]);
      assert.deepEqual(valuesOf(out, 'authorization'), []);
      assert.deepEqual(out.annotations, ['dropped: 1']);
      assert.deepEqual(out.events, [MIXED_STRIPPED]);
      assertNothingLeaked(out);
    }
  });

  void it('the same holds over clear-text HTTP', () => {
    const out = applyMaskedSecrets(head([['Authorization', `Bearer ${ATTACKER}, Bearer ${SURROGATE}`]], HOST, 'http'), [
      gh,
    ]);
    assert.deepEqual(valuesOf(out, 'authorization'), []);
    assert.deepEqual(out.annotations, ['dropped: 1']);
  });

  void it("a surrogate of another secret beside this secret's surrogate does not make a credential", () => {
    const both = { ...npm, scopes: [HOST], headers: ['X-Npm'] };
    const out = applyMaskedSecrets(head([['Authorization', `${npm.surrogate} ${SURROGATE}`]]), [gh, both]);
    assert.deepEqual(valuesOf(out, 'authorization'), []);
    assert.deepEqual(out.annotations, ['dropped: 1']);
  });

  void it('a scheme word made of letters that is a surrogate does not count as a scheme', () => {
    const letters = { ...gh, surrogate: 'qwertyuiopasdfgh', value: 'realrealrealreal' };
    const out = applyMaskedSecrets(head([['Authorization', 'qwertyuiopasdfgh qwertyuiopasdfgh']]), [letters]);
    assert.deepEqual(valuesOf(out, 'authorization'), []);
  });
});

void describe('where stripping does not apply, a surrogate with other content is left as it is', () => {
  const notReplaced = (name: string): string =>
    `NOT REPLACED masked secret in '${name}' for ${WHERE} (surrogate with other content; only a single credential is replaced)`;

  void it('a glob-matched header keeps its value and its useless surrogate, with a NOT REPLACED line', () => {
    const globbed = { ...gh, headers: ['X-*'] };
    for (const value of [
      `${SURROGATE}, ${ATTACKER}`,
      `Bearer ${ATTACKER}, Bearer ${SURROGATE}`,
      basic(`x:${SURROGATE},${ATTACKER}`),
    ]) {
      const out = applyMaskedSecrets(head([['X-Api-Key', value]]), [globbed]);
      assert.deepEqual(out.headers, [['X-Api-Key', value]]);
      assert.deepEqual(out.annotations, []);
      assert.deepEqual(out.events, [notReplaced('x-api-key')]);
    }
  });

  void it('a glob-matched header that is exactly one credential is still swapped', () => {
    const out = applyMaskedSecrets(head([['X-Api-Key', ` ${SURROGATE} `]]), [{ ...gh, headers: ['X-*'] }]);
    assert.deepEqual(out.headers, [['X-Api-Key', REAL]]);
    assert.deepEqual(out.annotations, ['masked: 1']);
  });

  void it('duplicates of a glob-matched header collapse to the one clean credential', () => {
    const out = applyMaskedSecrets(
      head([
        ['X-Api-Key', `${SURROGATE}, ${ATTACKER}`],
        ['x-api-key', SURROGATE],
      ]),
      [{ ...gh, headers: ['X-*'] }],
    );
    // The survivor keeps its own name spelling, in the first entry's place.
    assert.deepEqual(out.headers, [['x-api-key', REAL]]);
    assert.deepEqual(out.annotations, ['masked: 1']);
  });

  void it('allow_foreign_credentials keeps the value as sent, unreplaced', () => {
    const value = `Bearer ${ATTACKER}, Bearer ${SURROGATE}`;
    const out = applyMaskedSecrets(head([['Authorization', value]]), [{ ...gh, allowForeignCredentials: true }]);
    assert.deepEqual(out.headers, [['Authorization', value]]);
    assert.deepEqual(out.annotations, []);
    assert.deepEqual(out.events, [notReplaced('authorization')]);
  });

  void it('out of scope nothing is read at all', () => {
    const headers: Array<[string, string]> = [['Authorization', `Bearer ${ATTACKER}, Bearer ${SURROGATE}`]];
    const out = applyMaskedSecrets(head(headers, 'evil.example'), [gh]);
    assert.deepEqual(out.headers, headers);
    assert.deepEqual(out.events, []);
  });
});

void describe('the single-credential forms that are swapped', () => {
  const forms: Array<[string, string, string]> = [
    ['bare', SURROGATE, REAL],
    ['Bearer', `Bearer ${SURROGATE}`, `Bearer ${REAL}`],
    ['token, any case', `TOKEN ${SURROGATE}`, `TOKEN ${REAL}`],
    ['surrounding whitespace', `\t Bearer  ${SURROGATE} \t`, `Bearer ${REAL}`],
    ["git's Basic x-access-token", basic(`x-access-token:${SURROGATE}`), basic(`x-access-token:${REAL}`)],
    ['Basic with a login as user name', basic(`octocat:${SURROGATE}`), basic(`octocat:${REAL}`)],
    ['Basic with the token as user name and no password', basic(`${SURROGATE}:`), basic(`${REAL}:`)],
    ['Basic with the x-oauth-basic placeholder', basic(`${SURROGATE}:x-oauth-basic`), basic(`${REAL}:x-oauth-basic`)],
    ['Basic, mixed-case scheme, padded with spaces', ` bAsIc ${basic(`x:${SURROGATE}`).slice(6)} `, basic(`x:${REAL}`)],
  ];
  for (const [what, sent, forwarded] of forms) {
    void it(what, () => {
      const out = applyMaskedSecrets(head([['Authorization', sent]]), [gh]);
      assert.deepEqual(out.headers, [['Authorization', forwarded]]);
      assert.deepEqual(out.annotations, ['masked: 1']);
    });
  }
});

/** Is `value` exactly the real credential in one of the forms the pass emits? */
function isAllowedForm(value: string, real: string): boolean {
  if (value === real) return true;
  const scheme = /^([A-Za-z]+(?:-[A-Za-z0-9]+)*) (.*)$/.exec(value);
  if (scheme && scheme[2] === real && scheme[1]!.length <= 32) return true;
  const b64 = /^Basic ([A-Za-z0-9+/]+={0,2})$/.exec(value);
  if (!b64) return false;
  const decoded = Buffer.from(b64[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return false;
  const [user, pass] = [decoded.slice(0, colon), decoded.slice(colon + 1)];
  return pass === real || (user === real && (pass === '' || pass.toLowerCase() === 'x-oauth-basic'));
}

void describe('properties', () => {
  // Fragments an attacker would combine: surrogates, foreign tokens, scheme words, separators, whitespace.
  const fragment = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(SURROGATE, npm.surrogate, ATTACKER) },
    { weight: 3, arbitrary: fc.constantFrom('Bearer', 'bearer', 'token', 'Basic', 'x-access-token', 'x-oauth-basic') },
    { weight: 3, arbitrary: fc.constantFrom(' ', '\t', ',', ', ', ':', ';', '=', '"', '\u00a0') },
    { weight: 1, arbitrary: fc.string({ maxLength: 6 }) },
  );
  const joined = fc.array(fragment, { minLength: 1, maxLength: 7 }).map((parts) => parts.join(''));
  const headerValue = fc.oneof(
    joined,
    joined.map((text) => `Basic ${Buffer.from(text, 'utf8').toString('base64')}`),
  );
  const headerName = fc.constantFrom('Authorization', 'authorization', 'AUTHORIZATION', 'X-Api-Key', 'Accept');
  const request = fc.record({
    host: fc.constantFrom(HOST, 'github.com', 'registry.npmjs.org', 'evil.example'),
    scheme: fc.constantFrom<'http' | 'https'>('http', 'https'),
    headers: fc.array(fc.tuple(headerName, headerValue), { maxLength: 5 }),
  });
  const secrets = [gh, npm, { ...gh, name: 'GH_GLOB', headers: ['X-*'] }];

  void it('on a scoped host the exact-name header is absent or exactly the real credential in an allowed form', () => {
    fc.assert(
      fc.property(request, ({ host, scheme, headers }) => {
        const out = applyMaskedSecrets(head(headers, host, scheme), secrets);
        if (host === 'evil.example') {
          assert.deepEqual(out.headers, headers);
          return;
        }
        const real = host === 'registry.npmjs.org' ? npm.value : REAL;
        const surrogate = host === 'registry.npmjs.org' ? npm.surrogate : SURROGATE;
        const values = valuesOf(out, 'authorization');
        assert.ok(values.length <= 1, 'more than one Authorization reached the upstream');
        for (const value of values) {
          if (scheme === 'http') {
            // Over clear text a recognised single credential travels on as sent, surrogate and all.
            assert.ok(!value.includes(real), 'a real value went out in clear text');
            assert.ok(headers.some(([, v]) => v === value));
            const canonical = value.replace(/^[ \t]+|[ \t]+$/g, '').replace(/^(\S+)[ \t]+/, '$1 ');
            assert.ok(isAllowedForm(canonical, surrogate), `forwarded a value that is not one credential: ${value}`);
            continue;
          }
          assert.ok(isAllowedForm(value, real), `forwarded a value that is not one credential: ${value}`);
          assert.ok(!value.includes(ATTACKER), 'the attacker token rode along');
        }
      }),
      { numRuns: 5000 },
    );
  });

  void it('a glob-matched header either carries one real credential or is forwarded exactly as sent', () => {
    fc.assert(
      fc.property(request, ({ headers }) => {
        const out = applyMaskedSecrets(head(headers), secrets);
        const sent = headers.filter(([n]) => n.toLowerCase() === 'x-api-key').map(([, v]) => v);
        const forwarded = valuesOf(out, 'x-api-key');
        const swapped = forwarded.filter((v) => v.includes(REAL) || (v.startsWith('Basic ') && !sent.includes(v)));
        if (swapped.length > 0) {
          assert.equal(forwarded.length, 1);
          assert.ok(isAllowedForm(forwarded[0]!, REAL), `glob header partially replaced: ${forwarded[0]}`);
        } else {
          assert.deepEqual(forwarded, sent);
        }
      }),
      { numRuns: 3000 },
    );
  });

  void it('whitespace and a scheme word around the surrogate yield `<scheme> REAL`', () => {
    const ows = fc.array(fc.constantFrom(' ', '\t'), { maxLength: 3 }).map((a) => a.join(''));
    const gap = fc.array(fc.constantFrom(' ', '\t'), { minLength: 1, maxLength: 3 }).map((a) => a.join(''));
    const word = fc.stringMatching(/^[A-Za-z]{1,12}(-[A-Za-z0-9]{1,6})?$/);
    fc.assert(
      fc.property(ows, word, gap, ows, (before, scheme, between, after) => {
        const out = applyMaskedSecrets(head([['Authorization', `${before}${scheme}${between}${SURROGATE}${after}`]]), [
          gh,
        ]);
        assert.deepEqual(out.headers, [['Authorization', `${scheme} ${REAL}`]]);
      }),
      { numRuns: 2000 },
    );
  });

  void it('a surrogate next to any foreign token is never forwarded with the real value', () => {
    const separator = fc.constantFrom(' ', ',', ', ', '\t', ';', ' Bearer ', ',token ');
    fc.assert(
      fc.property(fc.boolean(), separator, fc.constantFrom('', 'Bearer ', 'token '), (first, sep, scheme) => {
        const value = first ? `${scheme}${SURROGATE}${sep}${ATTACKER}` : `${scheme}${ATTACKER}${sep}${SURROGATE}`;
        for (const wrapped of [value, basic(`x-access-token:${value}`)]) {
          const out = applyMaskedSecrets(head([['Authorization', wrapped]]), [gh]);
          assert.deepEqual(valuesOf(out, 'authorization'), []);
          assertNothingLeaked(out);
        }
      }),
      { numRuns: 500 },
    );
  });
});
