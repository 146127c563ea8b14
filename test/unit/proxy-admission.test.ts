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

const HTTPS = { scheme: 'https', port: 443 } as const;
const HTTP = { scheme: 'http', port: 80 } as const;

function req(over: Partial<AdmissionRequest>): AdmissionRequest {
  return {
    listener: HTTPS,
    method: 'GET',
    rawTarget: '/',
    hostHeaders: ['api.test'],
    sni: 'api.test',
    connection: [],
    ...over,
  };
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
    assert.equal(codeOf({ hostHeaders: [' '], listener: HTTP, sni: null }), 'missing_host');
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
    assert.equal(codeOf({ listener: HTTP, sni: null, rawTarget: 'http://other.test/x' }), 'host_mismatch');
    assert.equal(codeOf({ listener: HTTP, sni: null, rawTarget: 'http://x@api.test/x' }), 'host_mismatch');
    assert.equal(codeOf({ listener: HTTP, sni: null, rawTarget: 'http://API.test:80/x' }), 'allowed');
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
    assert.equal(codeOf({ listener: HTTP, sni: null, hostHeaders: ['bad host'] }), 'invalid_host');
  });
});

void describe('what an admission carries', () => {
  void test("port: always the listener's; the authority forwarded is the judged host and port, canonical", () => {
    const judged = (over: Partial<AdmissionRequest>) => {
      const a = admit(req(over), allowlist);
      return a.kind === 'allow' ? `${a.port} ${a.authority}` : a.code;
    };
    assert.equal(judged({}), '443 api.test');
    assert.equal(judged({ hostHeaders: ['API.test.:443'] }), '443 api.test');
    assert.equal(judged({ listener: HTTP, sni: null }), '80 api.test');
    assert.equal(judged({ listener: HTTP, sni: null, hostHeaders: ['api.test:80'] }), '80 api.test');
    const on8443 = AllowlistSchema.parse({ domains: ['api.test:8443', '[fd00::1]:8443'] });
    const at8443 = (over: Partial<AdmissionRequest>) => {
      const a = admit(req({ listener: { scheme: 'https', port: 8443 }, ...over }), on8443);
      return a.kind === 'allow' ? `${a.port} ${a.authority}` : a.code;
    };
    assert.equal(at8443({ hostHeaders: ['api.test:8443'] }), '8443 api.test:8443');
    assert.equal(at8443({ hostHeaders: ['[FD00::1]:8443'], sni: 'fd00::1' }), '8443 [fd00::1]:8443');
  });
  void test('a port in Host or an absolute-form target other than the listener’s is port_mismatch', () => {
    assert.equal(codeOf({ hostHeaders: ['api.test:8443'] }), 'port_mismatch');
    assert.equal(codeOf({ hostHeaders: ['api.test:22'] }), 'port_mismatch');
    assert.equal(codeOf({ hostHeaders: ['api.test:0'] }), 'port_mismatch');
    assert.equal(codeOf({ hostHeaders: ['api.test:99999'] }), 'port_mismatch');
    assert.equal(codeOf({ listener: HTTP, sni: null, hostHeaders: ['api.test:443'] }), 'port_mismatch');
    assert.equal(codeOf({ listener: HTTP, sni: null, rawTarget: 'http://api.test:9090/' }), 'port_mismatch');
    assert.equal(codeOf({ rawTarget: 'https://api.test:8443/' }), 'port_mismatch');
    // On a declared port a Host without the port means the default one: not the port connected to.
    const on5000 = AllowlistSchema.parse({ domains: ['api.test:5000'] });
    const at5000 = admit(req({ listener: { scheme: 'http', port: 5000 }, sni: null }), on5000);
    assert.equal(at5000.kind === 'deny' && at5000.code, 'port_mismatch');
  });
  void test('an allowed host on a port no entry names is port_not_allowed, with the entry that would open it', () => {
    const a = admit(req({ listener: { scheme: 'https', port: 5000 }, hostHeaders: ['api.test:5000'] }), allowlist);
    assert.equal(a.kind === 'deny' && a.code, 'port_not_allowed');
    assert.equal(a.kind === 'deny' && a.hint, '- {host: "api.test:5000", path: "/", methods: [GET]}');
  });
  void test('Connection naming an end-to-end header is a 400, checked before the host agrees', () => {
    for (const named of ['Content-Length', 'host', 'Transfer-Encoding', 'authorization', 'Cookie', 'x-amz-date']) {
      const a = admit(req({ connection: [`keep-alive, ${named}`], sni: 'other.test' }), allowlist);
      assert.equal(a.kind === 'deny' && `${a.status} ${a.code}`, '400 connection_header_not_allowed', named);
    }
    const custom = admit(req({ connection: ['x-token'], credentialHeader: (n) => n === 'x-token' }), allowlist);
    assert.equal(custom.kind === 'deny' && custom.code, 'connection_header_not_allowed');
    assert.equal(codeOf({ connection: ['keep-alive, Upgrade, TE, X-Private', 'close'] }), 'allowed');
  });
  void test('the forwarded target is origin-form', () => {
    const a = admit(req({ listener: HTTP, sni: null, rawTarget: 'http://api.test?q=1' }), allowlist);
    assert.equal(a.kind === 'allow' && a.target, '/?q=1');
  });
  void test('a refusal from the allowlist carries its YAML hint; one with no allowlist fix carries an explanation', () => {
    const blocked = admit(req({ hostHeaders: ['x.test'], sni: 'x.test', rawTarget: '/p' }), allowlist);
    assert.equal(blocked.kind === 'deny' && blocked.hint, '- {host: "x.test", path: "/p", methods: [GET]}');
    const mismatch = admit(req({ sni: 'x.test' }), allowlist);
    assert.equal(mismatch.kind === 'deny' && mismatch.hint, undefined, 'no allowlist entry can fix a mismatch');
    assert.match(mismatch.kind === 'deny' ? (mismatch.fix ?? '') : '', /same host/);
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
  let admitted = 0;
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
        admitted++;
        const norm = (h: string) => h.toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
        assert.ok(sni !== null);
        assert.equal(norm(sni), norm(hostHeader));
        if (absolute !== null) assert.equal(norm(absolute), norm(hostHeader));
      },
    ),
  );
  // An admit() that refused everything would pass the property vacuously.
  assert.ok(admitted > 0, 'no request was admitted');
});

void test('property: a request whose SNI, Host and target agree on an allowed host and path is admitted', () => {
  // Spellings of one host that must all be read as that host: case, a trailing dot, the listener's own port.
  const spelling = (name: string, port: number | null) =>
    fc
      .tuple(fc.boolean(), fc.boolean(), fc.boolean())
      .map(
        ([upper, dot, withPort]) =>
          `${upper ? name.toUpperCase() : name}${dot ? '.' : ''}${port !== null && withPort ? `:${port}` : ''}`,
      );
  const allowed = fc.oneof(
    fc.record({ name: fc.constant('api.test'), path: fc.constantFrom('/', '/x', '/a/b?q=1', '/v1/x') }),
    fc.record({ name: fc.constant('paths.test'), path: fc.constantFrom('/v1/', '/v1/x', '/v1/a/b?q=%20') }),
  );
  fc.assert(
    fc.property(
      fc.tuple(allowed, fc.constantFrom(HTTPS, HTTP)).chain(([{ name, path }, listener]) =>
        fc.record({
          path: fc.constant(path),
          listener: fc.constant(listener),
          hostHeader: spelling(name, listener.port),
          sni: spelling(name, null),
          absolute: fc.option(spelling(name, listener.port), { nil: null }),
          method: fc.constantFrom('GET', 'get'),
        }),
      ),
      ({ path, hostHeader, sni, absolute, listener, method }) => {
        const rawTarget = absolute === null ? path : `${listener.scheme}://${absolute}${path}`;
        const a = admit(
          req({ listener, method, hostHeaders: [hostHeader], sni: listener === HTTPS ? sni : null, rawTarget }),
          allowlist,
        );
        assert.equal(
          a.kind,
          'allow',
          `${listener.scheme} ${method} ${rawTarget} Host: ${hostHeader} SNI: ${sni}: ${JSON.stringify(a)}`,
        );
      },
    ),
    { numRuns: 500 },
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
