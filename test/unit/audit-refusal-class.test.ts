import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AllowlistSchema } from '../../src/protocol/allowlist.js';
import { DENY_CODES, refusalClass, type DenyCode } from '../../src/protocol/deny-codes.js';
import { admit, type AdmissionRequest } from '../../src/proxy/http/admission.js';

/**
 * Audit mode's one security decision: which refusals it may let through. Policy refusals (the allowlist does not list
 * the request) are audited; safety refusals (letting the request through would leak or escape whatever the allowlist
 * says) stay. Written out for every deny code, so a new code is a conscious choice here too.
 */
const EXPECTED: Record<DenyCode, 'policy' | 'safety'> = {
  host_not_allowed: 'policy',
  path_not_allowed: 'policy',
  method_not_allowed: 'policy',
  // The proxy takes the upstream port from the listener and scopes credentials by host *and* port, so a request to
  // an allowed host on a port no entry opens carries no real secret there: auditing it leaks nothing.
  port_not_allowed: 'policy',
  graphql_operation_blocked: 'policy',
  invalid_path: 'safety',
  invalid_host: 'safety',
  connect_not_allowed: 'safety',
  trace_not_allowed: 'safety',
  host_mismatch: 'safety',
  missing_host: 'safety',
  port_mismatch: 'safety',
  connection_header_not_allowed: 'safety',
  upgrade_not_allowed: 'safety',
  upstream_address_not_allowed: 'safety',
  tool_config_too_large: 'safety',
  tool_config_invalid: 'safety',
  blocklist_tool_config_unsupported: 'safety',
  wildcard_tool_domain_unsupported: 'safety',
};

describe('refusalClass', () => {
  it('classifies every deny code, and only deny codes', () => {
    assert.deepEqual(Object.keys(EXPECTED).sort(), Object.keys(DENY_CODES).sort());
    for (const code of Object.keys(DENY_CODES) as DenyCode[]) assert.equal(refusalClass(code), EXPECTED[code], code);
  });
});

const allowlist = AllowlistSchema.parse({
  url_prefixes: [
    { host: 'api.test', path: '/v1/*', methods: ['GET'] },
    { host: 'registry.test:5000', path: '/v2/*', methods: ['GET'] },
  ],
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

describe('admission in audit mode', () => {
  it('policy refusals become admissions that carry the deny code, reason, YAML hint and deciding rule', () => {
    const cases: Array<[Partial<AdmissionRequest>, DenyCode, string | undefined]> = [
      [{ hostHeaders: ['other.test'], sni: 'other.test' }, 'host_not_allowed', undefined],
      [{ rawTarget: '/v2/x' }, 'path_not_allowed', undefined],
      [{ method: 'DELETE', rawTarget: '/v1/x' }, 'method_not_allowed', 'url_prefixes[0] api.test /v1/* methods=GET'],
      // registry.test is open on 5000 only; the same request on 443 (a listener that exists) is a policy refusal.
      [{ hostHeaders: ['registry.test'], sni: 'registry.test', rawTarget: '/v2/x' }, 'port_not_allowed', undefined],
      // api.test is open on 443 only; on the declared port 5000 it is the same.
      [
        { listener: { scheme: 'https', port: 5000 }, hostHeaders: ['api.test:5000'], rawTarget: '/v1/x' },
        'port_not_allowed',
        undefined,
      ],
    ];
    for (const [over, code, rule] of cases) {
      const enforced = admit(req(over), allowlist);
      assert.equal(enforced.kind, 'deny');
      assert.equal(enforced.kind === 'deny' && enforced.code, code);
      assert.equal(enforced.kind === 'deny' && enforced.rule, rule);
      const audited = admit(req(over), allowlist, true);
      assert.equal(audited.kind, 'allow', code);
      if (audited.kind !== 'allow') continue;
      assert.equal(audited.wouldBlock?.code, code);
      assert.equal(audited.wouldBlock?.rule, rule);
      assert.match(audited.wouldBlock?.hint ?? '', /^- \{host: /);
      // The hint opens exactly the port the request went to, and the admission goes upstream on that port only.
      const port = over.listener?.port ?? 443;
      assert.equal(audited.port, port);
      if (port !== 443) assert.match(audited.wouldBlock?.hint ?? '', new RegExp(`host: "[^"]+:${port}"`));
      assert.equal(audited.decision, undefined, 'no entry matched, so no entry-bound body filter applies');
      assert.equal(audited.rule, '');
    }
  });
  it('safety refusals stay refusals', () => {
    const cases: Array<[Partial<AdmissionRequest>, string]> = [
      [{ method: 'CONNECT', rawTarget: 'api.test:443' }, 'connect_not_allowed'],
      [{ method: 'TRACE' }, 'trace_not_allowed'],
      [{ method: 'track' }, 'trace_not_allowed'],
      [{ sni: 'other.test' }, 'host_mismatch'],
      [{ sni: null }, 'host_mismatch'],
      [{ listener: HTTP, sni: null, rawTarget: 'http://other.test/' }, 'host_mismatch'],
      [{ hostHeaders: [] }, 'missing_host'],
      [{ hostHeaders: ['a.test', 'b.test'] }, 'bad_request'],
      [{ listener: HTTP, sni: null, hostHeaders: ['bad host!'] }, 'invalid_host'],
      [{ rawTarget: '/v1/../../admin' }, 'invalid_path'],
      [{ rawTarget: '/v1/%2e%2e/admin', hostHeaders: ['other.test'], sni: 'other.test' }, 'invalid_path'],
      // Issue 13's refusals: a Host steering to another port, smuggling through Connection, on a host the allowlist
      // does not list (audit would otherwise forward it) and on one it does.
      [{ hostHeaders: ['other.test:8080'], sni: 'other.test' }, 'port_mismatch'],
      [{ listener: HTTP, sni: null, rawTarget: 'http://api.test:5000/v1/x' }, 'port_mismatch'],
      [
        { hostHeaders: ['other.test'], sni: 'other.test', connection: ['close, Content-Length'] },
        'connection_header_not_allowed',
      ],
      [{ rawTarget: '/v1/x', connection: ['Host'] }, 'connection_header_not_allowed'],
      [{ rawTarget: '/v1/x', connection: ['x-amz-date'] }, 'connection_header_not_allowed'],
    ];
    for (const [over, code] of cases) {
      const audited = admit(req(over), allowlist, true);
      assert.equal(audited.kind, 'deny', `${code}: ${JSON.stringify(over)}`);
      assert.equal(audited.kind === 'deny' && audited.code, code);
    }
  });
  it('an allowed request is the same admission with or without audit', () => {
    assert.deepEqual(
      admit(req({ rawTarget: '/v1/x' }), allowlist, true),
      admit(req({ rawTarget: '/v1/x' }), allowlist),
    );
  });
});
