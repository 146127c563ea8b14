import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AllowlistSchema } from '../../src/protocol/allowlist.js';
import { hostCovers, lintAllowlist, pathCovers, type LintFinding } from '../../src/protocol/allowlist-lint.js';
import { fnmatchCase, globProblems } from '../../src/protocol/fnmatch.js';
import { HTTP_METHODS } from '../../src/protocol/http-methods.js';
import { declaredPorts, endpointMatches, hostMatches } from '../../src/protocol/policy.js';

/** Lints a file's content (as the loader would have parsed it) in airlock's own layout unless told otherwise. */
function lint(raw: unknown, airut = false): LintFinding[] {
  return lintAllowlist(AllowlistSchema.parse(raw), { airut });
}

function only(findings: LintFinding[]): LintFinding {
  assert.equal(findings.length, 1, JSON.stringify(findings, null, 2));
  return findings[0]!;
}

describe('policy linter: errors (entries that can never match)', () => {
  it('a URL, a path or user information in domains', () => {
    for (const [pattern, fix] of [
      ['https://github.com', 'write "github.com"'],
      ['http://registry.internal:5000', 'write "registry.internal:5000"'],
      ['github.com/acme', 'path'],
      ['user@github.com', 'user information'],
    ] as const) {
      const f = only(lint({ domains: [pattern] }));
      assert.equal(f.severity, 'error');
      assert.deepEqual(f.path, ['domains', 0]);
      assert.ok(f.message.includes(fix), f.message);
    }
  });
  it('a host with a port (no scheme) is left alone: ports are policy (issue 13)', () => {
    assert.deepEqual(lint({ domains: ['registry.internal:5000'] }), []);
  });
  it('a port that is not one number can never match; valid port patterns pass', () => {
    for (const [pattern, why] of [
      ['registry.test:abc', 'the port "abc" is not a number'],
      ['registry.test:*', 'the port "*" is not a number'],
      ['registry.test:', 'the port "" is not a number'],
      ['registry.test:5000-5010', 'the port "5000-5010" is not a number'],
      ['registry.test:5000:6000', 'more than one ":"'],
      ['[fd00::1]:https', 'after the bracketed address only ":PORT" may follow'],
      ['registry.test:53', "port 53 is the proxy's DNS"],
    ] as const) {
      for (const raw of [{ domains: [pattern] }, { url_prefixes: [{ host: pattern, path: '/x' }] }]) {
        const f = only(lint(raw));
        assert.equal(f.severity, 'error', pattern);
        assert.deepEqual(f.path, 'domains' in raw ? ['domains', 0] : ['url_prefixes', 0, 'host']);
        assert.ok(f.message.includes(why), f.message);
        // Really dead: the proxy's matcher never lets a request through on it, on any port it listens on.
        for (const port of [443, 5000, 6000]) assert.ok(!endpointMatches('registry.test', port, 'https', pattern));
        assert.ok(!declaredPorts(AllowlistSchema.parse(raw)).includes(53));
      }
    }
    for (const pattern of [
      'registry.test:5000',
      'registry.test:443',
      '*.corp.internal:8443',
      '[fd00::1]:8443',
      '[fd00::1]',
      'fd00::1',
      '[ab]?.corp.test:5000',
    ]) {
      assert.deepEqual(lint({ domains: [pattern] }), [], pattern);
    }
    assert.ok(
      endpointMatches('bx.corp.test', 5000, 'https', '[ab]?.corp.test:5000'),
      'a glob class is not an IPv6 bracket',
    );
    // Out of range: the schema itself refuses it (with file:line:col from the loader).
    for (const pattern of ['registry.test:0', 'registry.test:65536', '[fd00::1]:99999']) {
      assert.equal(AllowlistSchema.safeParse({ domains: [pattern] }).success, false, pattern);
    }
  });
  it('ports in duplicates, shadowing and bare "*": only the same port counts', () => {
    assert.deepEqual(lint({ domains: ['a.test', 'a.test:5000', '*.x.test', 'b.x.test:5000'] }), []);
    assert.match(only(lint({ domains: ['a.test:5000', 'A.test.:5000'] })).message, /duplicate of domains\[0\]/);
    assert.match(only(lint({ domains: ['*.x.test:5000', 'b.x.test:5000'] })).message, /shadowed by domains\[0\]/);
    const star = only(lint({ domains: ['*:5000'] }));
    assert.equal(star.severity, 'error');
    assert.match(star.message, /every host, path and method on port 5000/);
    assert.deepEqual(lint({ allow_all: true, domains: ['*:5000'] }), []);
  });
  it('a URL as a url_prefixes host', () => {
    const f = only(lint({ url_prefixes: [{ host: 'https://api.github.com', path: '/x' }] }));
    assert.equal(f.severity, 'error');
    assert.deepEqual(f.path, ['url_prefixes', 0, 'host']);
  });
  it('an unknown method, with the nearest known one', () => {
    const f = only(lint({ url_prefixes: [{ host: 'a.test', methods: ['GET', 'GTE'] }] }));
    assert.equal(f.severity, 'error');
    assert.deepEqual(f.path, ['url_prefixes', 0, 'methods', 1]);
    assert.match(f.message, /unknown HTTP method "GTE"; did you mean GET\?/);
  });
  it('known methods in any case pass; CONNECT and TRACE are warned about', () => {
    assert.deepEqual(lint({ url_prefixes: [{ host: 'a.test', methods: ['get', 'Propfind', 'PATCH'] }] }), []);
    const f = only(lint({ url_prefixes: [{ host: 'a.test', methods: ['GET', 'trace'] }] }));
    assert.equal(f.severity, 'warning');
    assert.match(f.message, /never forwarded/);
  });
  it('a class that matches nothing', () => {
    const f = only(lint({ url_prefixes: [{ host: 'a.test', path: '/v[z-a]/*' }] }));
    assert.equal(f.severity, 'error');
    assert.match(f.message, /matches no character/);
  });
  it('a path the proxy refuses before any rule (.. segment, backslash, NUL)', () => {
    for (const path of ['/a/../b', '/a/%2e%2e/*', '/a\\b', '/a%00b']) {
      const f = only(lint({ url_prefixes: [{ host: 'a.test', path }] }));
      assert.equal(f.severity, 'error', path);
      assert.deepEqual(f.path, ['url_prefixes', 0, 'path']);
    }
    // A wildcard may produce `..x`, which is an ordinary segment: not an error.
    assert.deepEqual(lint({ url_prefixes: [{ host: 'a.test', path: '/a/..*' }] }), []);
  });
  it('a path that does not start with "/" is refused by the schema itself', () => {
    assert.equal(AllowlistSchema.safeParse({ url_prefixes: [{ host: 'a.test', path: 'api/*' }] }).success, false);
  });
});

describe('policy linter: errors in .airlock/, warnings in Airut files (Airut gives them a meaning)', () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['bare * domain', { domains: ['*'] }, /allow_all: true/],
    ['a run of stars is still bare', { domains: ['**'] }, /allow_all: true/],
    ['host * with no path and no methods', { url_prefixes: [{ host: '*' }] }, /allow_all: true/],
    ['host * with path /*', { url_prefixes: [{ host: '*', path: '/*' }] }, /allow_all: true/],
    ['duplicate domains', { domains: ['a.test', 'A.test.'] }, /duplicate of domains\[0\]/],
    [
      'duplicate url_prefixes (methods in another order and case)',
      {
        url_prefixes: [
          { host: 'a.test', path: '/x', methods: ['GET', 'post'] },
          { host: 'a.test', path: '/x', methods: ['POST', 'GET'] },
        ],
      },
      /duplicate of url_prefixes\[0\]/,
    ],
    ['unclosed [ in a glob', { url_prefixes: [{ host: 'a.test', path: '/a/[*' }] }, /never closed/],
  ];
  for (const [name, raw, message] of cases) {
    it(name, () => {
      const strict = only(lint(raw, false));
      assert.equal(strict.severity, 'error');
      assert.match(strict.message, message);
      const airut = only(lint(raw, true));
      assert.equal(airut.severity, 'warning');
      assert.match(airut.message, /Airut file/);
    });
  }
  it('allow_all: true makes a bare * deliberate; without a bare * it is pointless', () => {
    assert.deepEqual(lint({ allow_all: true, domains: ['*'] }), []);
    assert.deepEqual(lint({ allow_all: true, url_prefixes: [{ host: '*' }] }), []);
    const f = only(lint({ allow_all: true, domains: ['a.test'] }));
    assert.equal(f.severity, 'warning');
    assert.deepEqual(f.path, ['allow_all']);
  });
  it('host * with a method list is valid in Airut: a warning in every layout, never an error', () => {
    for (const airut of [false, true]) {
      const f = only(lint({ url_prefixes: [{ host: '*', methods: ['GET'] }] }, airut));
      assert.equal(f.severity, 'warning');
      assert.match(f.message, /every host/);
    }
  });
  it('"[" in an exact pattern is an ordinary character', () => {
    assert.deepEqual(lint({ url_prefixes: [{ host: 'a.test', path: '/a/[x' }] }), []);
  });
});

describe('policy linter: warnings', () => {
  it('a url_prefixes entry under a domains entry for its host never decides', () => {
    const f = only(
      lint({
        domains: ['*.github.com'],
        url_prefixes: [
          { host: 'api.github.com', path: '/graphql', methods: ['POST'], graphql: { queries: ['viewer'] } },
        ],
      }),
    );
    assert.equal(f.severity, 'warning');
    assert.deepEqual(f.path, ['url_prefixes', 0]);
    assert.match(f.message, /domains\[0\].*never decides and its graphql filter never applies/);
  });
  it('an entry shadowed by an earlier, broader one', () => {
    const f = only(
      lint({
        url_prefixes: [
          { host: 'api.github.com', path: '/repos/*', methods: ['GET'] },
          { host: 'api.github.com', path: '/repos/acme/*', methods: ['get'] },
          { host: 'api.github.com', path: '/repos/acme/*', methods: ['GET', 'POST'] },
        ],
      }),
    );
    assert.deepEqual(f.path, ['url_prefixes', 1]);
    assert.match(f.message, /shadowed by the earlier url_prefixes\[0\]/);
  });
  it('a later, broader entry is not shadowing (first match wins)', () => {
    assert.deepEqual(
      lint({
        url_prefixes: [
          { host: 'api.github.com', path: '/repos/acme/*', methods: ['GET'] },
          { host: 'api.github.com', path: '/repos/*', methods: ['GET'] },
        ],
      }),
      [],
    );
  });
  it('a domains entry shadowed by an earlier wildcard', () => {
    const f = only(lint({ domains: ['*.example.com', 'api.example.com'] }));
    assert.deepEqual(f.path, ['domains', 1]);
    assert.match(f.message, /shadowed by domains\[0\]/);
  });
  it('wildcards that reach other owners: *.com, *github.com, api.*', () => {
    for (const pattern of ['*.com', '*github.com', 'api.*', '*.io']) {
      const f = only(lint({ domains: [pattern] }));
      assert.equal(f.severity, 'warning', pattern);
      assert.match(f.message, /allows far more than it names/);
    }
    for (const pattern of ['*.github.com', 'api-?.example.com', '*-api.example.com']) {
      assert.deepEqual(lint({ domains: [pattern] }), [], pattern);
    }
  });
});

describe('policy linter: real files', () => {
  it("Airut's own example allowlist has no findings", async () => {
    const { readFile } = await import('node:fs/promises');
    const { parse } = await import('yaml');
    const text = await readFile(new URL('../fixtures/airut/.airut/network-allowlist.yaml', import.meta.url), 'utf8');
    assert.deepEqual(lint(parse(text), true), []);
    assert.deepEqual(lint(parse(text), false), []);
  });
});

describe('method list', () => {
  it("is exactly what the proxy's HTTP parser accepts (letters-only methods)", () => {
    assert.deepEqual([...HTTP_METHODS].sort(), http.METHODS.filter((m) => /^[A-Z]+$/.test(m)).sort());
  });
});

describe('globProblems', () => {
  it('finds unclosed and empty classes the way fnmatch parses them', () => {
    assert.deepEqual(globProblems('/a/[*'), [{ kind: 'unclosed-class', at: 3 }]);
    assert.deepEqual(globProblems('/a/[]]*'), []);
    assert.deepEqual(globProblems('/a/[!]*'), [{ kind: 'unclosed-class', at: 3 }]);
    assert.deepEqual(globProblems('/[z-a]*'), [{ kind: 'empty-class', at: 1 }]);
    assert.deepEqual(globProblems('/[!z-a]*'), []);
    assert.deepEqual(globProblems('/[a-z0-9]*'), []);
  });
  it('an unclosed "[" really matches a literal "[", as the message says', () => {
    assert.equal(fnmatchCase('/a/[x', '/a/[*'), true);
    assert.equal(fnmatchCase('/a/x', '/a/[*'), false);
  });
});

describe('the shadowing judgement is sound', () => {
  const alphabet = fc.constantFrom('a', 'b', '.', '/', '-');
  const text = (max: number) => fc.array(alphabet, { maxLength: max }).map((cs) => cs.join(''));
  const pattern = fc.array(fc.oneof(alphabet, fc.constantFrom('*', '?')), { maxLength: 6 }).map((cs) => cs.join(''));
  // What decide() compares: hosts normalised (no trailing dot), targets starting with "/".
  const host = text(8).filter((h) => h !== '' && !h.endsWith('.'));
  const target = text(8).map((t) => '/' + t);
  const samples = (inner: string) => [inner.replace(/[*?]/g, ''), inner.replace(/[*?]/g, 'a')];
  it('for hosts: whatever the inner pattern matches, the outer one matches too', () => {
    fc.assert(
      fc.property(pattern, pattern, fc.array(host, { maxLength: 30 }), (outer, inner, values) => {
        if (!hostCovers(outer, inner)) return;
        for (const v of [...values, ...samples(inner)]) {
          if (hostMatches(v, inner)) assert.ok(hostMatches(v, outer), `${v} matches ${inner} but not ${outer}`);
        }
      }),
      { numRuns: 5000 },
    );
  });
  it('for paths (an empty path allows everything): the same', () => {
    const path = fc.oneof(
      fc.constant(''),
      pattern.map((p) => '/' + p),
      pattern,
    );
    const matches = (v: string, p: string) => p === '' || fnmatchCase(v, p);
    fc.assert(
      fc.property(path, path, fc.array(target, { maxLength: 30 }), (outer, inner, values) => {
        if (!pathCovers(outer, inner)) return;
        for (const v of [...values, ...samples(inner).map((s) => (s.startsWith('/') ? s : '/' + s))]) {
          if (matches(v, inner)) assert.ok(matches(v, outer), `${v} matches ${inner} but not ${outer}`);
        }
      }),
      { numRuns: 5000 },
    );
  });
  it('for host patterns with ports: what the inner one opens (host and port), the outer one opens too', () => {
    const withPort = fc.tuple(pattern, fc.constantFrom('', ':443', ':5000')).map(([p, port]) => p + port);
    fc.assert(
      fc.property(withPort, withPort, fc.array(host, { maxLength: 20 }), (outer, inner, values) => {
        if (!hostCovers(outer, inner)) return;
        for (const v of [...values, ...samples(inner.replace(/:\d+$/, ''))]) {
          for (const port of [443, 5000]) {
            if (endpointMatches(v, port, 'https', inner)) {
              assert.ok(endpointMatches(v, port, 'https', outer), `${v}:${port} is in ${inner} but not ${outer}`);
            }
          }
        }
      }),
      { numRuns: 3000 },
    );
  });
  it('finds the common cases it exists for', () => {
    assert.ok(hostCovers('*.github.com', 'api.github.com'));
    assert.ok(hostCovers('*.github.com', '*.api.github.com'));
    assert.ok(!hostCovers('api.github.com', '*.github.com'));
    assert.ok(pathCovers('/repos/*', '/repos/acme/*'));
    assert.ok(pathCovers('', '/x'));
    assert.ok(!pathCovers('/repos/acme/*', '/repos/*'));
  });
});
