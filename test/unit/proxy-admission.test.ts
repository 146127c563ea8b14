import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { AllowlistSchema } from '../../src/protocol/allowlist.js';
import { admit, splitAbsoluteForm, type AdmissionRequest } from '../../src/proxy/http/admission.js';
import { premintNames, wildcardParents } from '../../src/proxy/start.js';

/** The order of checks before anything leaves the proxy, one branch at a time (pure; no sockets). */

const allowlist = AllowlistSchema.parse({
  domains: ['api.test'],
  url_prefixes: [{ host: 'paths.test', path: '/v1/*', methods: ['GET'] }],
});

function req(over: Partial<AdmissionRequest>): AdmissionRequest {
  return { listener: 'https', method: 'GET', rawTarget: '/', hostHeaders: ['api.test'], sni: 'api.test', ...over };
}

function codeOf(over: Partial<AdmissionRequest>): string {
  const a = admit(req(over), allowlist);
  return a.kind === 'allow' ? 'allowed' : a.code;
}

void describe('order of checks', () => {
  void test('CONNECT first, whatever else is wrong', () => {
    assert.equal(
      codeOf({ method: 'CONNECT', hostHeaders: ['a', 'b'], sni: null, rawTarget: '/..' }),
      'connect_not_allowed',
    );
  });
  void test('TRACE and TRACK before host checks', () => {
    for (const method of ['TRACE', 'track']) {
      assert.equal(codeOf({ method, hostHeaders: ['other.test'] }), 'trace_not_allowed');
    }
  });
  void test('duplicate Host is a 400 before the mismatch check', () => {
    const a = admit(req({ hostHeaders: ['api.test', 'api.test'] }), allowlist);
    assert.equal(a.kind === 'deny' && a.status, 400);
  });
  void test('a missing Host is missing_host', () => {
    assert.equal(codeOf({ hostHeaders: [] }), 'missing_host');
    assert.equal(codeOf({ hostHeaders: [' '], listener: 'http', sni: null }), 'missing_host');
  });
  void test('HTTPS without SNI is host_mismatch', () => {
    assert.equal(codeOf({ sni: null }), 'host_mismatch');
  });
  void test('SNI and Host must agree (case and port ignored)', () => {
    assert.equal(codeOf({ sni: 'other.test' }), 'host_mismatch');
    assert.equal(codeOf({ sni: 'API.TEST', hostHeaders: ['api.test.:443'] }), 'allowed');
  });
  void test('an absolute-form target must name the Host on either listener', () => {
    assert.equal(codeOf({ rawTarget: 'https://other.test/x' }), 'host_mismatch');
    assert.equal(codeOf({ listener: 'http', sni: null, rawTarget: 'http://other.test/x' }), 'host_mismatch');
    assert.equal(codeOf({ listener: 'http', sni: null, rawTarget: 'http://x@api.test/x' }), 'host_mismatch');
    assert.equal(codeOf({ listener: 'http', sni: null, rawTarget: 'http://API.test:80/x' }), 'allowed');
  });
  void test('host mismatch precedes path validation, which precedes the allowlist', () => {
    assert.equal(codeOf({ sni: 'other.test', rawTarget: '/../x' }), 'host_mismatch');
    assert.equal(codeOf({ hostHeaders: ['other.test'], sni: 'other.test', rawTarget: '/a/%2e%2e/x' }), 'invalid_path');
    assert.equal(codeOf({ hostHeaders: ['other.test'], sni: 'other.test' }), 'host_not_allowed');
  });
  void test('the query is not part of path validation (Airut item 39, fixed)', () => {
    assert.equal(codeOf({ rawTarget: '/a/..?x' }), 'invalid_path');
    assert.equal(codeOf({ rawTarget: '/a?r=/../' }), 'allowed');
  });
  void test('an invalid Host header is invalid_host on plain HTTP', () => {
    assert.equal(codeOf({ listener: 'http', sni: null, hostHeaders: ['bad host'] }), 'invalid_host');
  });
});

void describe('what an admission carries', () => {
  void test('port: from the Host header, else the listener default', () => {
    const port = (over: Partial<AdmissionRequest>) => {
      const a = admit(req(over), allowlist);
      return a.kind === 'allow' ? a.port : -1;
    };
    assert.equal(port({}), 443);
    assert.equal(port({ hostHeaders: ['api.test:8443'] }), 8443);
    assert.equal(port({ listener: 'http', sni: null }), 80);
    assert.equal(port({ listener: 'http', sni: null, hostHeaders: ['api.test:8080'] }), 8080);
  });
  void test('the forwarded target is origin-form', () => {
    const a = admit(req({ listener: 'http', sni: null, rawTarget: 'http://api.test?q=1' }), allowlist);
    assert.equal(a.kind === 'allow' && a.target, '/?q=1');
  });
  void test('a refusal from the allowlist carries its hint; one with no allowlist fix carries an explanation', () => {
    const blocked = admit(req({ hostHeaders: ['x.test'], sni: 'x.test', rawTarget: '/p' }), allowlist);
    assert.equal(
      blocked.kind === 'deny' && blocked.hint,
      'url_prefixes: - {host: "x.test", path: "/p", methods: [GET]}',
    );
    const mismatch = admit(req({ sni: 'x.test' }), allowlist);
    assert.match(mismatch.kind === 'deny' ? (mismatch.hint ?? '') : '', /same host/);
  });
});

void test('splitAbsoluteForm', () => {
  assert.deepEqual(splitAbsoluteForm('http://a.test'), { authority: 'a.test', target: '/' });
  assert.deepEqual(splitAbsoluteForm('https://a.test:1/x?y'), { authority: 'a.test:1', target: '/x?y' });
  assert.equal(splitAbsoluteForm('/x'), null);
  assert.equal(splitAbsoluteForm('*'), null);
});

void test('property: an admitted request always has SNI, Host and any absolute-form host naming one host', () => {
  const host = fc.constantFrom('api.test', 'API.test', 'api.test.', 'api.test:443', 'other.test', 'paths.test');
  fc.assert(
    fc.property(
      host,
      fc.option(host, { nil: null }),
      fc.option(host, { nil: null }),
      fc.constantFrom('/', '/v1/x', '/a/../b', '/%2e%2e'),
      (hostHeader, sni, absolute, path) => {
        const rawTarget = absolute === null ? path : `https://${absolute}${path}`;
        const a = admit(req({ hostHeaders: [hostHeader], sni, rawTarget }), allowlist);
        if (a.kind !== 'allow') return;
        const norm = (h: string) => h.toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
        assert.ok(sni !== null);
        assert.equal(norm(sni), norm(hostHeader));
        if (absolute !== null) assert.equal(norm(absolute), norm(hostHeader));
      },
    ),
  );
});

void test('premintNames: exact names from domains and url_prefixes, normalised, deduplicated, bounded', () => {
  const names = premintNames(
    AllowlistSchema.parse({
      domains: ['GitHub.com.', '*.github.com', '140.82.112.3', 'github.com', '[::1]'],
      url_prefixes: [{ host: 'api.github.com', path: '/x' }, { host: 'uploads-?.example' }],
    }),
    10,
  );
  assert.deepEqual(names, ['github.com', 'api.github.com']);
  assert.deepEqual(premintNames(AllowlistSchema.parse({ domains: ['a.test', 'b.test'] }), 1), ['a.test']);
});

void test('wildcardParents: the suffix of each `*.suffix` pattern with two labels or more, and nothing else', () => {
  const parents = wildcardParents(
    AllowlistSchema.parse({
      domains: ['*.GitHub.com.', '*.com', '*.*.example.org', 'api-*.example.net', '*', '*.pages.dev', '*.10.0.0.1'],
      url_prefixes: [{ host: '*.githubusercontent.com', path: '/x' }, { host: '*.github.com' }, { host: '*.a?.test' }],
    }),
    10,
  );
  assert.deepEqual(parents, ['github.com', 'pages.dev', 'githubusercontent.com']);
  assert.deepEqual(wildcardParents(AllowlistSchema.parse({ domains: ['*.a.test', '*.b.test'] }), 1), ['a.test']);
});
