import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AllowlistSchema, type Allowlist } from '../../src/protocol/allowlist.js';
import { decide, type Decision } from '../../src/protocol/policy.js';

/**
 * Properties of the allowlist decision, checked over generated allowlists and requests. The generated allowlists
 * use host patterns whose meaning is simple enough to restate here (exact, `*.suffix`, one `?`), so "matches no
 * rule" is decided by an oracle written independently of fnmatch.
 */

const RUNS = { numRuns: 400 };

const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,6}[a-z0-9])?$/);
const ALLOWED_TLDS = ['com', 'org', 'io'] as const;
const OTHER_TLDS = ['net', 'dev', 'test'] as const;
const hostUnder = (tlds: readonly string[]) =>
  fc
    .tuple(fc.array(label, { minLength: 1, maxLength: 3 }), fc.constantFrom(...tlds))
    .map(([labels, tld]) => [...labels, tld].join('.'));

/** A pattern, a host it matches, and an independent restatement of what it matches. */
type HostPattern = { pattern: string; example: string; matches: (host: string) => boolean };

/** Exact, `*.` + suffix, or one character of the first label replaced by `?`; always ending in a literal TLD. */
const hostPattern: fc.Arbitrary<HostPattern> = fc.oneof(
  hostUnder(ALLOWED_TLDS).map((h) => ({ pattern: h, example: h, matches: (x: string) => x === h })),
  fc.tuple(hostUnder(ALLOWED_TLDS), label).map(([h, sub]) => ({
    pattern: `*.${h}`,
    example: `${sub}.${h}`,
    matches: (x: string) => x.endsWith(`.${h}`),
  })),
  fc.tuple(hostUnder(ALLOWED_TLDS), fc.nat()).map(([h, n]) => {
    const i = n % h.indexOf('.');
    return {
      pattern: h.slice(0, i) + '?' + h.slice(i + 1),
      example: h.slice(0, i) + 'q' + h.slice(i + 1),
      matches: (x: string) =>
        x.length === h.length && x.slice(0, i) === h.slice(0, i) && x.slice(i + 1) === h.slice(i + 1),
    };
  }),
);

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD'] as const;
const UNRESERVED_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~';
const segment = fc.stringMatching(/^[A-Za-z0-9\-_~]{1,8}$/);
const plainPath = fc.array(segment, { minLength: 0, maxLength: 4 }).map((s) => '/' + s.join('/'));
const query = fc.option(fc.stringMatching(/^[a-z0-9=&]{0,10}$/), { nil: undefined });

const pathRule = (paths: readonly string[]) =>
  fc.oneof(
    fc.constant(''),
    fc.constant('*'),
    fc.constantFrom(...paths),
    fc.constantFrom(...paths).map((p) => `${p}*`),
    fc.constantFrom(...paths).map((p) => `${p}/*`),
  );

interface GeneratedPolicy {
  allowlist: Allowlist;
  patterns: HostPattern[];
}

const policy = (paths: readonly string[] = ['/', '/api', '/api/v1']): fc.Arbitrary<GeneratedPolicy> =>
  fc
    .tuple(
      fc.array(hostPattern, { maxLength: 3 }),
      fc.array(
        fc.record({
          host: hostPattern,
          path: pathRule(paths),
          methods: fc.subarray([...METHODS]),
        }),
        { maxLength: 4 },
      ),
    )
    .map(([domains, prefixes]) => ({
      allowlist: AllowlistSchema.parse({
        domains: domains.map((d) => d.pattern),
        url_prefixes: prefixes.map((p) => ({ host: p.host.pattern, path: p.path, methods: p.methods })),
      }),
      patterns: [...domains, ...prefixes.map((p) => p.host)],
    }));

/** The same host as a client might spell it: any letter case, maybe a trailing dot, maybe a port. */
const spelledHost = (host: string) =>
  fc
    .tuple(
      fc.array(fc.boolean(), { minLength: host.length, maxLength: host.length }),
      fc.boolean(),
      fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
    )
    .map(([upper, trailingDot, port]) => {
      const cased = [...host].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join('');
      return cased + (trailingDot ? '.' : '') + (port === undefined ? '' : `:${port}`);
    });

const hex = (c: string, upper: boolean) => {
  const h = c.charCodeAt(0).toString(16).padStart(2, '0');
  return '%' + (upper ? h.toUpperCase() : h);
};

/** Percent-encode some unreserved characters of a path, with either hex case; `/` and `?` are never touched. */
const encodedUnreserved = (target: string) =>
  fc
    .array(fc.constantFrom('keep', 'lower', 'upper'), { minLength: target.length, maxLength: target.length })
    .map((how) =>
      [...target]
        .map((c, i) => (UNRESERVED_CHARS.includes(c) && how[i] !== 'keep' ? hex(c, how[i] === 'upper') : c))
        .join(''),
    );

/** Percent-encode any characters of a path (what an attacker may send to dodge a match). */
const encodedAnything = (path: string) =>
  fc
    .array(fc.integer({ min: 0, max: 3 }), { minLength: path.length, maxLength: path.length })
    .map((how) => [...path].map((c, i) => (how[i] === 0 ? hex(c, true) : how[i] === 1 ? hex(c, false) : c)).join(''));

const outcome = (d: Decision) => ({
  allowed: d.allowed,
  code: d.code,
  rule: d.allowed ? `${d.rule.kind}[${d.rule.index}]` : null,
});

const withQuery = (path: string, q: string | undefined) => path + (q === undefined ? '' : `?${q}`);

void describe('policy properties: hosts', () => {
  void it('a request whose host matches no rule is never allowed, however host and path are spelled', () => {
    const unmatchedHost = fc.oneof(
      hostUnder(OTHER_TLDS).chain(spelledHost),
      hostUnder(ALLOWED_TLDS).chain(spelledHost),
      fc.ipV4().chain(spelledHost),
      fc.ipV6().map((ip) => `[${ip}]`),
    );
    fc.assert(
      fc.property(
        policy(),
        unmatchedHost,
        fc.constantFrom(...METHODS),
        plainPath.chain(encodedAnything),
        query,
        (p, spelled, method, path, q) => {
          const canonical = spelled
            .replace(/^\[(.*)\]$/, '$1')
            .replace(/:\d+$/, '')
            .replace(/\.$/, '')
            .toLowerCase();
          fc.pre(!p.patterns.some((pattern) => pattern.matches(canonical)));
          const d = decide({ method, host: spelled, target: withQuery(path, q) }, p.allowlist);
          assert.equal(d.allowed, false, d.reason);
          assert.ok(['host_not_allowed', 'invalid_host', 'invalid_path'].includes(d.code), d.code);
        },
      ),
      RUNS,
    );
  });

  void it('near misses of an allowed host are not allowed: suffix tricks, the apex of a wildcard, a longer label', () => {
    fc.assert(
      fc.property(hostUnder(ALLOWED_TLDS), label, (h, extra) => {
        const al = AllowlistSchema.parse({ domains: [h], url_prefixes: [{ host: `*.${h}` }] });
        for (const near of [`${h}.${extra}.net`, `${extra}${h}`, `${h}${extra}`, `${h}:443.evil.net`, `${h}..`]) {
          assert.equal(decide({ method: 'GET', host: near, target: '/' }, al).allowed, false, near);
        }
        const wildcardOnly = AllowlistSchema.parse({ domains: [`*.${h}`] });
        assert.equal(decide({ method: 'GET', host: h, target: '/' }, wildcardOnly).allowed, false, 'apex');
      }),
      RUNS,
    );
  });

  void it('on a given port (the listener’s), the decision does not depend on host case, a trailing dot or a port written in the host', () => {
    fc.assert(
      fc.property(
        policy().chain((p) =>
          fc.tuple(
            fc.constant(p),
            // Hosts the policy names as well as unrelated ones, so allowed outcomes are compared too.
            fc
              .oneof(
                fc.constantFrom('unrelated.example.net', ...p.patterns.map((x) => x.example)),
                hostUnder(OTHER_TLDS),
              )
              .chain((host) =>
                fc.tuple(fc.constant(host), fc.array(spelledHost(host), { minLength: 1, maxLength: 5 })),
              ),
          ),
        ),
        fc.constantFrom(...METHODS),
        plainPath,
        ([p, [host, spellings]], method, target) => {
          const base = outcome(decide({ method, host, target, port: 443 }, p.allowlist));
          for (const spelled of spellings) {
            const d = decide({ method, host: spelled, target, port: 443 }, p.allowlist);
            assert.deepEqual(outcome(d), base, spelled);
          }
        },
      ),
      RUNS,
    );
  });

  void it('a host a rule names is allowed under every spelling', () => {
    fc.assert(
      fc.property(
        hostPattern.chain((hp) => fc.tuple(fc.constant(hp), spelledHost(hp.example))),
        plainPath,
        ([hp, spelled], target) => {
          const al = AllowlistSchema.parse({ url_prefixes: [{ host: hp.pattern, path: target }] });
          const d = decide({ method: 'GET', host: spelled, target, port: 443 }, al);
          assert.equal(d.allowed, true, `${spelled} ${target}: ${d.reason}`);
        },
      ),
      RUNS,
    );
  });
});

void describe('policy properties: ports', () => {
  void it('an entry opens exactly one port: the one it names, else the scheme’s default', () => {
    fc.assert(
      fc.property(
        hostPattern,
        fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
        fc.integer({ min: 1, max: 65535 }),
        fc.constantFrom('http' as const, 'https' as const),
        (hp, named, port, scheme) => {
          const pattern = named === undefined ? hp.pattern : `${hp.pattern}:${named}`;
          const al = AllowlistSchema.parse({ domains: [pattern] });
          const d = decide({ method: 'GET', host: hp.example, target: '/', port, scheme }, al);
          const open = named ?? (scheme === 'https' ? 443 : 80);
          assert.equal(d.allowed, port === open, `${pattern} at ${scheme} ${port}`);
          if (!d.allowed) assert.equal(d.code, 'port_not_allowed');
        },
      ),
      RUNS,
    );
  });
});

void describe('policy properties: paths', () => {
  void it('the decision does not change when unreserved path characters are percent-encoded', () => {
    const policyAndTarget = fc
      .tuple(
        fc
          .array(plainPath, { minLength: 1, maxLength: 3 })
          .chain((paths) => fc.tuple(policy(paths), fc.constantFrom(...paths))),
        query,
      )
      .chain(([[p, path], q]) => {
        const target = withQuery(path, q);
        return fc.tuple(
          fc.constant(p),
          fc.constant(target),
          fc.array(encodedUnreserved(target), { minLength: 1, maxLength: 5 }),
        );
      });
    fc.assert(
      fc.property(
        policyAndTarget,
        hostUnder(ALLOWED_TLDS),
        fc.constantFrom(...METHODS),
        ([p, target, encodings], host, method) => {
          // Point the path rules at the request's host so they take part in the decision.
          const al: Allowlist = { ...p.allowlist, url_prefixes: p.allowlist.url_prefixes.map((r) => ({ ...r, host })) };
          const base = outcome(decide({ method, host, target }, al));
          for (const encoded of encodings) {
            assert.deepEqual(outcome(decide({ method, host, target: encoded }, al)), base, encoded);
          }
        },
      ),
      RUNS,
    );
  });

  const dotDot = fc.constantFrom('..', '.%2e', '%2e.', '%2E%2e', '%2e%2E', '.%2E');
  const nul = fc.constantFrom('%00', '\0');
  const backslash = fc.constantFrom('\\', '%5c', '%5C');
  const wideOpen = AllowlistSchema.parse({
    domains: ['*'],
    url_prefixes: [{ host: '*', path: '*' }],
  });

  void it('a path with a decoded ".." segment is never allowed, even by a wide-open allowlist', () => {
    fc.assert(
      fc.property(
        fc.array(segment, { maxLength: 3 }),
        fc.array(segment, { maxLength: 3 }),
        dotDot,
        fc.boolean(),
        query,
        fc.constantFrom(...METHODS),
        (before, after, dots, trailingSlash, q, method) => {
          const path = '/' + [...before, dots, ...after].join('/') + (trailingSlash ? '/' : '');
          const target = path + (q === undefined ? '' : `?${q}`);
          const d = decide({ method, host: 'example.com', target }, wideOpen);
          assert.equal(d.allowed, false, target);
          assert.equal(d.code, 'invalid_path');
        },
      ),
      RUNS,
    );
  });

  void it('a path with a NUL or a backslash anywhere, raw or encoded, is never allowed', () => {
    fc.assert(
      fc.property(plainPath, fc.nat(), fc.oneof(nul, backslash), query, (path, at, bad, q) => {
        const i = 1 + (at % path.length);
        const target = path.slice(0, i) + bad + path.slice(i) + (q === undefined ? '' : `?${q}`);
        const d = decide({ method: 'GET', host: 'example.com', target }, wideOpen);
        assert.equal(d.allowed, false, JSON.stringify(target));
        assert.equal(d.code, 'invalid_path');
      }),
      RUNS,
    );
  });

  void it('dots that are not a whole segment are allowed', () => {
    fc.assert(
      fc.property(segment, fc.constantFrom('..x', 'x..', '...', '.', '.%2e.'), (s, dots) => {
        const d = decide({ method: 'GET', host: 'example.com', target: `/${s}/${dots}/${s}` }, wideOpen);
        assert.equal(d.allowed, true, d.reason);
      }),
      { numRuns: 50 },
    );
  });
});

void describe('policy properties: the decision is total and bounded', () => {
  // Glob syntax is over-represented: random ASCII alone almost never forms a character class or a range.
  const printable = fc.stringMatching(/^[\x21-\x7e]$/);
  const globToken = fc.oneof(
    fc.constantFrom('*', '?', '[', ']', '!', '-', '^', '\\', 'a', 'z', 'A', 'Z', '0', '.'),
    printable,
    fc.tuple(printable, printable).map(([from, to]) => `[${from}-${to}]`),
  );
  const asciiPattern = fc.array(globToken, { minLength: 1, maxLength: 8 }).map((chars) => chars.join(''));

  void it('never throws, whatever schema-valid patterns the allowlist holds', () => {
    fc.assert(
      fc.property(
        fc.array(asciiPattern, { maxLength: 3 }),
        fc.array(
          fc.record({
            host: asciiPattern,
            path: fc.oneof(
              fc.constant(''),
              asciiPattern.map((p) => `/${p}`),
            ),
          }),
          {
            maxLength: 3,
          },
        ),
        fc.string({ maxLength: 30 }),
        fc.string({ maxLength: 40 }),
        (domains, url_prefixes, host, target) => {
          const parsed = AllowlistSchema.safeParse({ domains, url_prefixes });
          fc.pre(parsed.success);
          const d = decide({ method: 'GET', host, target: `/${target}` }, parsed.data);
          assert.equal(typeof d.allowed, 'boolean');
        },
      ),
      // Found by this property: a reversed range (lower-casing can make one, as in `[Z-a]`) is a RegExp error.
      { numRuns: 2000, examples: [[['[Z-a]*.example.com'], [], 'x.example.com', '']] },
    );
  });

  void it('a url_prefixes entry with a literal path allows a request for exactly that path', () => {
    const escape = fc
      .tuple(fc.integer({ min: 0, max: 255 }), fc.boolean())
      .map(([b, upper]) => hex(String.fromCharCode(b), upper));
    const literalPath = fc
      .array(fc.oneof(segment, escape), { minLength: 1, maxLength: 5 })
      .map((parts) => '/' + parts.join(''));
    fc.assert(
      fc.property(literalPath, (path) => {
        fc.pre(!/[*?]/.test(path));
        const al = AllowlistSchema.parse({ url_prefixes: [{ host: 'api.example.com', path }] });
        const d = decide({ method: 'GET', host: 'api.example.com', target: path }, al);
        fc.pre(d.code !== 'invalid_path');
        assert.equal(d.allowed, true, `${path}: ${d.reason}`);
      }),
      // Found by this property: a rule path is compared as written while the target is normalised first.
      { ...RUNS, examples: [['/%7euser'], ['/a%2fb']] },
    );
  });

  void it('matching a path pattern against a request target of up to 8 KiB takes under 50 ms', () => {
    // Paths are attacker-chosen and patterns with a few `*` are ordinary (`/repos/*/*/pulls/*`). The target
    // repeats the pattern's literals and then fails at the very end: the worst case for a backtracking matcher.
    // Three `*`: enough to show the cost, few enough that a failing run still ends in seconds.
    const word = fc.stringMatching(/^[a-z]{3,6}$/);
    fc.assert(
      fc.property(word, fc.array(word, { minLength: 2, maxLength: 2 }), (first, rest) => {
        const pattern = `/${first}/*/${rest.join('/*/')}/*/end`;
        const body = `/${first}/` + `${rest.join('/')}/`.repeat(8192);
        const target = body.slice(0, 8192 - 2) + '/x';
        const al = AllowlistSchema.parse({ url_prefixes: [{ host: 'example.com', path: pattern }] });
        const started = performance.now();
        decide({ method: 'GET', host: 'example.com', target }, al);
        const elapsed = performance.now() - started;
        assert.ok(elapsed < 50, `${pattern} against ${target.length} bytes took ${elapsed.toFixed(0)} ms`);
      }),
      // No shrinking: each slow case costs seconds, and the first one already says what is wrong.
      { numRuns: 10, endOnFailure: true, examples: [['repos', ['pulls', 'comments']]] },
    );
  });
});
