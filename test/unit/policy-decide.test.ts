import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AllowlistSchema, splitHostPattern, type Allowlist } from '../../src/protocol/allowlist.js';
import { fnmatchCase, globMatch, globWalk } from '../../src/protocol/fnmatch.js';
import {
  decide,
  declaredPorts,
  explicitPort,
  formatAuthority,
  normalizeHost,
  pathProblem,
  percentDecode,
} from '../../src/protocol/policy.js';
import { SandboxConfigSchema } from '../../src/protocol/sandbox-config.js';

const allowlist = (raw: unknown): Allowlist => AllowlistSchema.parse(raw);
const check = (al: Allowlist, method: string, host: string, target: string) => decide({ method, host, target }, al);
const allowed = (al: Allowlist, method: string, host: string, target: string) =>
  check(al, method, host, target).allowed;

describe('host matching (airut-behaviour.md items 31-33)', () => {
  const al = allowlist({ domains: ['*.github.com', 'Example.ORG', 'api-?.test.dev'] });
  it('wildcard matches sub-domains at any depth', () => {
    assert.equal(allowed(al, 'GET', 'api.github.com', '/'), true);
    assert.equal(allowed(al, 'GET', 'a.b.github.com', '/'), true);
  });
  it('*.github.com does not match the apex github.com', () => {
    assert.equal(check(al, 'GET', 'github.com', '/').code, 'host_not_allowed');
  });
  it('is case-insensitive on both sides and ignores a trailing dot and a port', () => {
    assert.equal(allowed(al, 'GET', 'EXAMPLE.org', '/'), true);
    assert.equal(allowed(al, 'GET', 'example.org.', '/'), true);
    assert.equal(allowed(al, 'GET', 'API.GitHub.COM:443', '/'), true);
  });
  it('? matches exactly one character', () => {
    assert.equal(allowed(al, 'GET', 'api-1.test.dev', '/'), true);
    assert.equal(allowed(al, 'GET', 'api-12.test.dev', '/'), false);
    assert.equal(allowed(al, 'GET', 'api-.test.dev', '/'), false);
  });
  it('a lone * allows every host', () => {
    assert.equal(allowed(allowlist({ domains: ['*'] }), 'GET', 'anything.example', '/'), true);
  });
  it('a suffix look-alike does not match an exact entry', () => {
    assert.equal(allowed(al, 'GET', 'example.org.evil.com', '/'), false);
    assert.equal(allowed(al, 'GET', 'evilexample.org', '/'), false);
  });
  it('character classes work only alongside * or ? (Python fnmatch as Airut uses it)', () => {
    const cls = allowlist({ domains: ['[ab]*.x.io', '[ab].y.io'] });
    assert.equal(allowed(cls, 'GET', 'a1.x.io', '/'), true);
    assert.equal(allowed(cls, 'GET', 'c1.x.io', '/'), false);
    assert.equal(allowed(cls, 'GET', 'a.y.io', '/'), false, 'no * or ?: compared literally');
  });
});

describe('ports: an entry opens the default port, or the one it names (not in Airut: it ignores ports)', () => {
  const al = allowlist({
    domains: ['open.test', 'registry.test:5000', '10.0.0.5:8443', '[fd00::1]:9000'],
    url_prefixes: [{ host: '*.internal:8080', path: '/api/*', methods: ['GET'] }],
  });
  const at = (host: string, port: number, scheme: 'http' | 'https' = 'https', target = '/') =>
    decide({ method: 'GET', host, target, port, scheme }, al);
  it('an entry without a port opens 443 on TLS and 80 in clear, nothing else', () => {
    assert.equal(at('open.test', 443).allowed, true);
    assert.equal(at('open.test', 80, 'http').allowed, true);
    assert.equal(at('open.test', 80, 'https').code, 'port_not_allowed');
    assert.equal(at('open.test', 8443).code, 'port_not_allowed');
  });
  it('an entry with a port opens that port, whatever the scheme, and not the default', () => {
    assert.equal(at('registry.test', 5000).allowed, true);
    assert.equal(at('registry.test', 5000, 'http').allowed, true);
    assert.equal(at('registry.test', 443).code, 'port_not_allowed');
    assert.equal(at('10.0.0.5', 8443).allowed, true);
    assert.equal(at('fd00::1', 9000).allowed, true);
    assert.equal(at('a.internal', 8080, 'http', '/api/x').allowed, true);
    assert.equal(at('a.internal', 8080, 'http', '/other').code, 'path_not_allowed');
    assert.equal(at('a.internal', 80, 'http', '/api/x').code, 'port_not_allowed');
  });
  it('without an explicit port, the one written in the host decides (airlock policy check)', () => {
    assert.equal(check(al, 'GET', 'registry.test:5000', '/').allowed, true);
    assert.equal(check(al, 'GET', 'registry.test', '/').code, 'port_not_allowed');
  });
  it('port_not_allowed names the entry that would open the port', () => {
    const d = at('open.test', 8443);
    assert.equal(d.allowed ? '' : d.hint, '- {host: "open.test:8443", path: "/", methods: [GET]}');
    assert.match(d.reason, /open\.test is allowed on other ports, not on 8443/);
  });
  it('a port out of range in an entry, a scope or an upstream_hosts key is a configuration error', () => {
    assert.throws(() => allowlist({ domains: ['a.test:0'] }), /between 1 and 65535/);
    assert.throws(() => allowlist({ url_prefixes: [{ host: 'a.test:65536' }] }), /between 1 and 65535/);
    const masked = (scopes: string[]) => ({
      masked_secrets: { T: { value: 'v', scopes, headers: ['Authorization'] } },
    });
    assert.doesNotThrow(() => SandboxConfigSchema.parse(masked(['a.test:8443', '*.b.test'])));
    assert.throws(() => SandboxConfigSchema.parse(masked(['a.test:99999'])), /between 1 and 65535/);
    assert.doesNotThrow(() => SandboxConfigSchema.parse({ upstream_hosts: { 'git.internal:5000': '10.0.0.5' } }));
    assert.throws(() => SandboxConfigSchema.parse({ upstream_hosts: { 'git.internal:0': '10.0.0.5' } }), /65535/);
  });
  it('host patterns split into host and port; bare IPv6 literals have none', () => {
    assert.deepEqual(splitHostPattern('registry.test:5000'), { host: 'registry.test', port: 5000 });
    assert.deepEqual(splitHostPattern('*.internal:8443'), { host: '*.internal', port: 8443 });
    assert.deepEqual(splitHostPattern('[fd00::1]:443'), { host: '[fd00::1]', port: 443 });
    assert.deepEqual(splitHostPattern('[fd00::1]'), { host: '[fd00::1]', port: null });
    assert.deepEqual(splitHostPattern('fd00::1'), { host: 'fd00::1', port: null });
    assert.deepEqual(splitHostPattern('a.test:http'), { host: 'a.test:http', port: null });
    assert.equal(explicitPort('a.test:5000'), 5000);
    assert.equal(explicitPort('[::1]:22'), 22);
    assert.equal(explicitPort('::1'), null);
    assert.equal(explicitPort('a.test'), null);
    assert.equal(formatAuthority('a.test', 443, 'https'), 'a.test');
    assert.equal(formatAuthority('a.test', 443, 'http'), 'a.test:443');
    assert.equal(formatAuthority('fd00::1', 8443, 'https'), '[fd00::1]:8443');
  });
  it('the ports the proxy listens on besides 53/80/443: every port an entry names, once, in order', () => {
    const al2 = allowlist({
      domains: ['a.test:8443', 'b.test', 'c.test:443', 'd.test:53'],
      url_prefixes: [{ host: '*.e.test:5000' }, { host: 'a.test:8443', path: '/x' }, { host: '[fd00::1]:9000' }],
    });
    assert.deepEqual(declaredPorts(al2), [5000, 8443, 9000]);
    assert.deepEqual(declaredPorts(allowlist({ domains: ['plain.test'] })), []);
  });
});

describe('path matching (items 34-36)', () => {
  const al = allowlist({
    url_prefixes: [
      { host: 'api.example.com', path: '/api' },
      { host: 'api.example.com', path: '/v1/*' },
      { host: 'any.example.com' },
      { host: 'case.example.com', path: '/Data/*' },
    ],
  });
  it('a path without wildcards is exact: no implicit prefix, trailing slash matters', () => {
    assert.equal(allowed(al, 'GET', 'api.example.com', '/api'), true);
    assert.equal(allowed(al, 'GET', 'api.example.com', '/api/'), false);
    assert.equal(allowed(al, 'GET', 'api.example.com', '/api/x'), false);
  });
  it('the query is part of the matched path, as in Airut', () => {
    assert.equal(allowed(al, 'GET', 'api.example.com', '/api?x=1'), false);
    assert.equal(allowed(al, 'GET', 'api.example.com', '/v1/x?y'), true);
  });
  it('/v1/* does not match /v1 itself', () => {
    assert.equal(check(al, 'GET', 'api.example.com', '/v1').code, 'path_not_allowed');
  });
  it('* crosses slashes', () => {
    assert.equal(allowed(al, 'GET', 'api.example.com', '/v1/a/b/c'), true);
  });
  it('an empty or absent path allows every path', () => {
    assert.equal(allowed(al, 'DELETE', 'any.example.com', '/whatever/deep?q=1'), true);
  });
  it('paths are case-sensitive', () => {
    assert.equal(allowed(al, 'GET', 'case.example.com', '/Data/x'), true);
    assert.equal(allowed(al, 'GET', 'case.example.com', '/data/x'), false);
  });
});

describe('methods (item 36)', () => {
  const al = allowlist({ url_prefixes: [{ host: 'h.example', path: '/r', methods: ['get', 'HEAD'] }] });
  it('are compared case-insensitively', () => {
    assert.equal(allowed(al, 'GET', 'h.example', '/r'), true);
    assert.equal(allowed(al, 'head', 'h.example', '/r'), true);
  });
  it('a method outside the list is method_not_allowed with a hint naming it', () => {
    const d = check(al, 'POST', 'h.example', '/r');
    assert.equal(d.allowed, false);
    assert.equal(d.code, 'method_not_allowed');
    assert.ok(!d.allowed && d.hint?.includes('methods: [POST]'));
  });
  it('empty methods allow every method', () => {
    const any = allowlist({ url_prefixes: [{ host: 'h.example', path: '/r', methods: [] }] });
    for (const m of ['GET', 'POST', 'PATCH', 'PROPFIND']) assert.equal(allowed(any, m, 'h.example', '/r'), true);
  });
});

describe('order (item 37)', () => {
  const al = allowlist({
    domains: ['open.example'],
    url_prefixes: [
      { host: 'open.example', path: '/never', methods: ['GET'] },
      { host: 'x.example', path: '/a/*', methods: ['GET'] },
      { host: 'x.example', path: '/a/b', methods: ['POST'] },
    ],
  });
  it('a domains entry wins over url_prefixes and allows every method and path', () => {
    const d = check(al, 'DELETE', 'open.example', '/anything');
    assert.ok(d.allowed && d.rule.kind === 'domain' && d.rule.index === 0);
  });
  it('the first url_prefixes entry whose host, path and method all match wins', () => {
    const d = check(al, 'POST', 'x.example', '/a/b');
    assert.ok(d.allowed && d.rule.kind === 'url_prefix' && d.rule.index === 2);
  });
});

describe('path validation (items 38-39, fixed)', () => {
  const al = allowlist({ domains: ['h.example'] });
  const code = (target: string) => check(al, 'GET', 'h.example', target).code;
  it('blocks traversal segments, also when percent-encoded', () => {
    assert.equal(code('/a/../b'), 'invalid_path');
    assert.equal(code('/a/..'), 'invalid_path');
    assert.equal(code('/a/%2e%2e/b'), 'invalid_path');
    assert.equal(code('/a/%2E%2e'), 'invalid_path');
    assert.equal(code('/a/.%2e/b'), 'invalid_path');
    assert.equal(code('/a%2f..%2fb'), 'invalid_path');
  });
  it('checks the path only, never the query: /a/..?x is blocked (Airut let it through)', () => {
    assert.equal(code('/a/..?x'), 'invalid_path');
    assert.equal(code('/a?r=/../'), 'allowed', 'a query is data, not a path');
  });
  it('blocks NUL and backslash, raw or encoded', () => {
    assert.equal(code('/a%00b'), 'invalid_path');
    assert.equal(code('/a\\b'), 'invalid_path');
    assert.equal(code('/a%5cb'), 'invalid_path');
    assert.equal(code('/a%5C..%5Cb'), 'invalid_path');
  });
  it('lets names that merely contain dots through', () => {
    assert.equal(code('/x/..hidden'), 'allowed');
    assert.equal(code('/x/a..b/'), 'allowed');
    assert.equal(code('/x/.../'), 'allowed');
  });
  it('decodes once: %252e%252e stays a harmless %2e%2e', () => {
    assert.equal(percentDecode('/%252e%252e'), '/%2e%2e');
    assert.equal(code('/%252e%252e/x'), 'allowed');
  });
  it('keeps malformed escapes and + as written, invalid UTF-8 becomes U+FFFD', () => {
    assert.equal(percentDecode('/%ZZ+a'), '/%ZZ+a');
    assert.equal(percentDecode('/%ff'), '/\uFFFD');
    assert.equal(percentDecode('/%e4%bd%a0'), '/你');
  });
  it('requires an origin-form path', () => {
    assert.notEqual(pathProblem('relative'), null);
    assert.equal(pathProblem('/ok'), null);
  });
});

describe('percent-encoding normalisation', () => {
  const al = allowlist({ url_prefixes: [{ host: 'h.example', path: '/api/*' }] });
  it('an escaped unreserved character gets the same decision as the plain one', () => {
    assert.equal(allowed(al, 'GET', 'h.example', '/%61pi/x'), true);
    assert.equal(allowed(al, 'GET', 'h.example', '/api/%7Euser'), true);
  });
  it('rule paths are normalised like request targets', () => {
    const al2 = allowlist({
      url_prefixes: [
        { host: 'h.example', path: '/%7euser/*' },
        { host: 'h.example', path: '/a%2fb' },
      ],
    });
    assert.equal(allowed(al2, 'GET', 'h.example', '/~user/x'), true);
    assert.equal(allowed(al2, 'GET', 'h.example', '/%7Euser/x'), true);
    assert.equal(allowed(al2, 'GET', 'h.example', '/a%2Fb'), true);
    assert.equal(allowed(al2, 'GET', 'h.example', '/a/b'), false);
  });
  it('an escaped slash is not a slash', () => {
    const exact = allowlist({ url_prefixes: [{ host: 'h.example', path: '/a/b' }] });
    assert.equal(allowed(exact, 'GET', 'h.example', '/a%2fb'), false);
  });
});

describe('hosts: validity, IDN, IP literals', () => {
  it('normalises and validates host names', () => {
    assert.equal(normalizeHost('Api.Example.COM.'), 'api.example.com');
    assert.equal(normalizeHost('api.example.com:8443'), 'api.example.com');
    assert.equal(normalizeHost('xn--bcher-kva.example'), 'xn--bcher-kva.example');
    assert.equal(normalizeHost('bücher.example'), null, 'IDNs arrive as punycode on the wire');
    assert.equal(normalizeHost('evil.com/x'), null);
    assert.equal(normalizeHost('a..b'), null);
    assert.equal(normalizeHost('-a.example'), null);
    assert.equal(normalizeHost(''), null);
    assert.equal(normalizeHost('a b'), null);
    assert.equal(normalizeHost('host:99999x'), null);
    assert.equal(normalizeHost('\u212Aey.example'), null, 'the Kelvin sign is not an ASCII k');
  });
  it('accepts IPv4 and IPv6 literals and rejects malformed ones', () => {
    assert.equal(normalizeHost('10.0.0.1'), '10.0.0.1');
    assert.equal(normalizeHost('10.0.0.1:80'), '10.0.0.1');
    assert.equal(normalizeHost('[::1]'), '::1');
    assert.equal(normalizeHost('[2001:DB8::1]:443'), '2001:db8::1');
    assert.equal(normalizeHost('256.1.1.1'), null);
    assert.equal(normalizeHost('1.2.3'), null);
    assert.equal(normalizeHost('01.2.3.4'), null, 'octal-looking octets are ambiguous');
    assert.equal(normalizeHost('[::1'), null);
    assert.equal(normalizeHost('[1:2:3:4:5:6:7:8:9]'), null);
  });
  it('an invalid host is invalid_host, never allowed even by *', () => {
    const d = check(allowlist({ domains: ['*'] }), 'GET', 'bad host', '/');
    assert.equal(d.code, 'invalid_host');
  });
  it('an IP literal matches only an entry naming it', () => {
    const al = allowlist({ domains: ['10.1.2.3', '[fd00::1]'] });
    assert.equal(allowed(al, 'GET', '10.1.2.3:443', '/'), true);
    assert.equal(allowed(al, 'GET', '[fd00::1]:443', '/'), true);
    assert.equal(allowed(al, 'GET', '10.1.2.4', '/'), false);
  });
  it('punycode entries match punycode hosts case-insensitively', () => {
    const al = allowlist({ domains: ['XN--BCHER-KVA.example'] });
    assert.equal(allowed(al, 'GET', 'xn--bcher-kva.example', '/'), true);
  });
});

describe('denials are actionable', () => {
  it('host_not_allowed carries the exact entry that would allow the request', () => {
    const d = check(allowlist({}), 'GET', 'api.example.com', '/v1/x?page=2');
    assert.equal(d.code, 'host_not_allowed');
    assert.ok(!d.allowed);
    assert.equal(d.hint, '- {host: "api.example.com", path: "/v1/x[?]*", methods: [GET]}');
    const entry = { host: 'api.example.com', path: '/v1/x[?]*', methods: ['GET'] };
    assert.equal(allowed(allowlist({ url_prefixes: [entry] }), 'GET', 'api.example.com', '/v1/x?page=2'), true);
    assert.equal(allowed(allowlist({ url_prefixes: [entry] }), 'GET', 'api.example.com', '/v1/xy'), false);
  });
  it('the empty allowlist blocks everything', () => {
    for (const h of ['github.com', 'localhost', '127.0.0.1'])
      assert.equal(allowed(allowlist({}), 'GET', h, '/'), false);
  });
});

describe('fnmatch translation', () => {
  it('escapes regex metacharacters in literal parts', () => {
    assert.equal(fnmatchCase('/a.b', '/a.b*'), true);
    assert.equal(fnmatchCase('/axb', '/a.b*'), false);
    assert.equal(fnmatchCase('/(x)+', '/(x)+*'), true);
  });
  it('supports negated classes and ranges', () => {
    assert.equal(fnmatchCase('v2', 'v[!1]*'), true);
    assert.equal(fnmatchCase('v1', 'v[!1]*'), false);
    assert.equal(fnmatchCase('b9', '[a-c][0-9]*'), true);
  });
  it('an unclosed [ is literal', () => {
    assert.equal(fnmatchCase('a[b', 'a[b*'), true);
  });
  it('is anchored at both ends', () => {
    assert.equal(globMatch('xabc', 'abc*'), false);
    assert.equal(globMatch('abcx', '*abc'), false);
  });
  it('a reversed range matches nothing instead of throwing (CPython drops it)', () => {
    assert.equal(fnmatchCase('m.example', '[z-a]*'), false);
    assert.equal(fnmatchCase('a1', '[z-ab]*'), false);
    assert.equal(fnmatchCase('b1', '[z-ab]*'), true);
  });
  it('does at most pattern × value work with many stars against a long value (no exponential backtracking)', () => {
    const value = '/ab/' + 'x/'.repeat(4000) + 'nope';
    const pattern = '/ab/*/cd/*/ef/*/end';
    const { matched, steps } = globWalk(value, pattern);
    assert.equal(matched, false);
    // A backtracking regex needed ~n^3 steps here (3.6 s); the walk is bounded by (|value|+1) × (|pattern|+1).
    assert.ok(steps <= (value.length + 1) * (pattern.length + 1), `${steps} steps`);
    assert.ok(steps < value.length * 4, `${steps} steps: a single star resume per character`);
  });
});
