import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { hasErrors, lintAllowlist } from '../../src/protocol/allowlist-lint.js';
import {
  registryRoot,
  suggestAllowlist,
  suggestionAllowlist,
  type ObservedRequest,
} from '../../src/protocol/allowlist-suggest.js';
import { decide, formatAuthority, splitTarget } from '../../src/protocol/policy.js';
import { AllowlistSchema, type Allowlist } from '../../src/protocol/allowlist.js';

function req(method: string, host: string, target: string, port?: number): ObservedRequest {
  return { method, host, target, ...(port !== undefined ? { port } : {}) };
}

/** What the proxy decides for the request on the port (and scheme) it was made to. */
function allows(allowlist: Allowlist, r: ObservedRequest): boolean {
  const scheme = r.scheme ?? 'https';
  const port = r.port ?? (scheme === 'https' ? 443 : 80);
  return decide({ method: r.method, host: r.host, target: r.target, scheme, port }, allowlist).allowed;
}

/** The host pattern an entry for the request names: the host, with the port when it is not the default. */
function authorityOf(r: ObservedRequest): string {
  const scheme = r.scheme ?? 'https';
  return formatAuthority(r.host, r.port ?? (scheme === 'https' ? 443 : 80), scheme);
}

const npmWorkload: ObservedRequest[] = ['lodash', 'express', '@types/node', 'left-pad', 'chalk', 'ms'].flatMap(
  (pkg) => {
    const base = pkg.split('/').pop()!;
    return [
      req('GET', 'registry.npmjs.org', `/${pkg.replace('/', '%2f')}`),
      req('GET', 'registry.npmjs.org', `/${pkg}/-/${base}-1.0.${pkg.length}.tgz`),
    ];
  },
);

const apiWorkload: ObservedRequest[] = [
  ...[1, 2, 3, 4, 5].map((n) => req('GET', 'api.github.com', `/repos/acme/app/issues/${n}`)),
  req('GET', 'api.github.com', '/repos/acme/app/issues?state=open&page=1'),
  req('GET', 'api.github.com', '/repos/acme/app/issues?state=open&page=2'),
  req('POST', 'api.github.com', '/repos/acme/app/issues'),
  req('POST', 'api.github.com', '/repos/acme/app/issues/3/comments'),
  req('GET', 'api.github.com', '/user'),
];

describe('allowlist suggest: path templates', () => {
  it('an issue list and its numbered items become the exact list plus dir/*', () => {
    const s = suggestAllowlist(apiWorkload);
    const entries = s.entries.map((e) => (e.kind === 'url_prefix' ? `${e.methods.join(',')} ${e.path}` : e.host));
    assert.deepEqual(entries, [
      'POST /repos/acme/app/issues',
      'GET /repos/acme/app/issues/*',
      'POST /repos/acme/app/issues/3/comments',
      'GET /repos/acme/app/issues[?]*',
      'GET /user',
    ]);
  });
  it('an npm registry becomes one prefix, whatever the packages', () => {
    const s = suggestAllowlist(npmWorkload);
    assert.equal(s.entries.length, 1);
    const e = s.entries[0]!;
    assert.equal(e.kind, 'url_prefix');
    assert.deepEqual(e.kind === 'url_prefix' && [e.host, e.path, e.methods], ['registry.npmjs.org', '/*', ['GET']]);
    assert.equal(e.requests, npmWorkload.length);
  });
  it('registry layouts are recognised below a prefix too', () => {
    assert.equal(registryRoot('/lodash/-/lodash-4.17.21.tgz'), '');
    assert.equal(registryRoot('/@types/node/-/node-20.1.0.tgz'), '');
    assert.equal(registryRoot('/api/npm/npm-remote/lodash/-/lodash-1.0.0.tgz'), '/api/npm/npm-remote');
    assert.equal(registryRoot('/simple/requests/'), '/simple');
    assert.equal(registryRoot('/pypi/requests/json'), '/pypi');
    assert.equal(registryRoot('/packages/ab/cd/ef01/requests-2.0-py3-none-any.whl'), '/packages');
    assert.equal(registryRoot('/github.com/pkg/errors/@v/list'), '');
    assert.equal(registryRoot('/repos/acme/app/issues/1'), null);
    const one = suggestAllowlist([
      req('GET', 'npm.internal', '/api/npm/remote/lodash'),
      req('GET', 'npm.internal', '/api/npm/remote/lodash/-/lodash-4.17.21.tgz'),
    ]);
    assert.deepEqual(
      one.entries.map((e) => e.kind === 'url_prefix' && e.path),
      ['/api/npm/remote/*'],
    );
  });
  it('two names that are not identifiers stay exact; ids and same-type files are generalised', () => {
    const two = suggestAllowlist([req('GET', 'h.test', '/docs/intro'), req('GET', 'h.test', '/docs/setup')]);
    assert.deepEqual(
      two.entries.map((e) => e.kind === 'url_prefix' && e.path),
      ['/docs/intro', '/docs/setup'],
    );
    const files = suggestAllowlist([req('GET', 'h.test', '/dist/app.js'), req('GET', 'h.test', '/dist/vendor.js')]);
    assert.deepEqual(
      files.entries.map((e) => e.kind === 'url_prefix' && e.path),
      ['/dist/*'],
    );
  });
  it('never widens a method: POST where only GET fanned out stays exact', () => {
    const s = suggestAllowlist(apiWorkload);
    const al = suggestionAllowlist(s);
    assert.equal(allows(al, req('GET', 'api.github.com', '/repos/acme/app/issues/99')), true);
    assert.equal(allows(al, req('POST', 'api.github.com', '/repos/acme/app/issues/99')), false);
    assert.equal(allows(al, req('DELETE', 'api.github.com', '/repos/acme/app/issues/1')), false);
    assert.equal(allows(al, req('GET', 'api.github.com', '/repos/acme/other/issues/1')), false);
  });
  it('wildcard characters in observed paths are escaped, so they match only themselves', () => {
    const s = suggestAllowlist([req('GET', 'h.test', '/a*b'), req('GET', 'h.test', '/q?x=1')]);
    const al = suggestionAllowlist(s);
    assert.equal(allows(al, req('GET', 'h.test', '/a*b')), true);
    assert.equal(allows(al, req('GET', 'h.test', '/aXXb')), false);
    assert.equal(allows(al, req('GET', 'h.test', '/q?y=2')), true);
    assert.equal(allows(al, req('GET', 'h.test', '/qq')), false);
  });
  it('a host that used many methods on many paths gets one domains entry', () => {
    const methods = ['GET', 'POST', 'PUT', 'DELETE'];
    const reqs = methods.flatMap((m) => ['a', 'b', 'c'].map((p, i) => req(m, 'busy.test', `/${p}${m}/${i}`)));
    const s = suggestAllowlist(reqs);
    assert.deepEqual(
      s.entries.map((e) => [e.kind, e.host]),
      [['domain', 'busy.test']],
    );
  });
  it('comments name the most frequent requests, never a query string', () => {
    const s = suggestAllowlist([
      ...apiWorkload,
      req('GET', 'api.github.com', '/repos/acme/app/issues/1'),
      req('GET', 'api.github.com', '/repos/acme/app/issues?token=SURROGATE'),
    ]);
    const issues = s.entries.find((e) => e.kind === 'url_prefix' && e.path === '/repos/acme/app/issues/*')!;
    assert.equal(issues.requests, 6);
    assert.equal(issues.examples[0], 'GET /repos/acme/app/issues/1');
    const query = s.entries.find((e) => e.kind === 'url_prefix' && e.path.endsWith('[?]*'))!;
    assert.deepEqual(query.examples, ['GET /repos/acme/app/issues?…']);
  });
  it('with an existing allowlist, only what it does not allow is suggested', () => {
    const existing: Allowlist = { domains: [], url_prefixes: [{ host: 'api.github.com', path: '/user', methods: [] }] };
    const s = suggestAllowlist(apiWorkload, existing);
    assert.equal(s.alreadyAllowed, 1);
    assert.ok(!s.entries.some((e) => e.kind === 'url_prefix' && e.path === '/user'));
  });
  it('learns ports: a request on another port gives an entry naming it, which opens that port only', () => {
    const observed: ObservedRequest[] = [
      req('GET', 'registry.test', '/v2/app/manifests/1', 5000),
      req('GET', 'registry.test', '/v2/app/blobs/sha256', 5000),
      req('GET', 'registry.test', '/health'),
      { method: 'GET', host: 'plain.test', target: '/index', scheme: 'http', port: 80 },
      { method: 'GET', host: 'plain.test', target: '/metrics', scheme: 'http', port: 8080 },
      req('GET', 'fd00::1', '/x', 8443),
    ];
    const s = suggestAllowlist(observed);
    assert.deepEqual(
      s.entries.map((e) => (e.kind === 'url_prefix' ? `${e.host} ${e.path}` : e.host)),
      [
        '[fd00::1]:8443 /x',
        'plain.test /index',
        'plain.test:8080 /metrics',
        'registry.test /health',
        'registry.test:5000 /v2/app/blobs/sha256',
        'registry.test:5000 /v2/app/manifests/1',
      ],
    );
    // What the schema and the linter accept, and what the proxy then enforces.
    const al = AllowlistSchema.parse(suggestionAllowlist(s));
    assert.deepEqual(lintAllowlist(al, { airut: false }), []);
    for (const r of observed) assert.ok(allows(al, r), `${r.method} ${authorityOf(r)}${r.target}`);
    for (const r of observed) {
      for (const port of [443, 5000, 8080, 8443, 9999]) {
        const probe = { ...r, port };
        if (authorityOf(probe) === authorityOf(r)) continue;
        assert.ok(!allows(al, probe), `${r.method} ${r.host}${r.target} on ${port}`);
      }
    }
    // An existing entry naming the port already allows it: nothing is suggested for it.
    const existing = AllowlistSchema.parse({ url_prefixes: [{ host: 'registry.test:5000', path: '/v2/*' }] });
    const merged = suggestAllowlist(observed, existing);
    assert.equal(merged.alreadyAllowed, 2);
    assert.ok(!merged.entries.some((e) => e.host === 'registry.test:5000'));
  });
  it('is compact: dozens of requests, a handful of entries, lint-clean', () => {
    const s = suggestAllowlist([...npmWorkload, ...apiWorkload]);
    assert.ok(npmWorkload.length + apiWorkload.length >= 20);
    assert.ok(s.entries.length <= 6, `${s.entries.length} entries`);
    assert.deepEqual(lintAllowlist(suggestionAllowlist(s), { airut: false }), []);
  });
});

// Property tests. Workloads: a few hosts, each with a few methods, each with a few path families (a fixed prefix)
// holding items. Names use an alphabet that includes wildcard characters but cannot form a registry layout.
const name = fc.stringMatching(/^[a-z0-9*?[]{1,5}$/);
const family = fc.tuple(fc.array(name, { minLength: 1, maxLength: 3 }), fc.array(name, { minLength: 1, maxLength: 6 }));
const HOSTS = ['api.test', 'registry.test', 'cdn.test'];
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE'];
const workload = fc
  .array(
    fc.tuple(
      fc.constantFrom(...HOSTS),
      fc.constantFrom(...METHODS),
      family,
      fc.boolean(), // with a query
      fc.constantFrom(undefined, 443, 5000), // the port (undefined: the default)
    ),
    { minLength: 1, maxLength: 8 },
  )
  .map((groups) =>
    groups.flatMap(([host, method, [prefix, items], withQuery, port]) =>
      items.map((item, i) =>
        req(method, host, `/${[...prefix, item].join('/')}${withQuery && i % 2 === 0 ? `?page=${i}` : ''}`, port),
      ),
    ),
  );
/** Ports the workload never uses. */
const UNSEEN_PORTS = [80, 8443];

/** Directory prefixes of a path (`/a/b/c` → '', '/a', '/a/b'), the places a `dir/*` template can start. */
function directories(path: string): string[] {
  const segments = path.slice(1).split('/');
  return Array.from({ length: segments.length }, (_, i) => (i === 0 ? '' : '/' + segments.slice(0, i).join('/')));
}

describe('allowlist suggest: properties', () => {
  it('allows every observed request; never a host not seen; never a method not seen on the host', () => {
    fc.assert(
      fc.property(workload, fc.constantFrom(...METHODS, 'PATCH'), (observed, probeMethod) => {
        const s = suggestAllowlist(observed);
        const al = suggestionAllowlist(s);
        for (const r of observed) assert.ok(allows(al, r), `not allowed: ${r.method} ${r.host}${r.target}`);
        for (const r of observed) assert.ok(!allows(al, { ...r, host: 'unseen.test' }));
        for (const r of observed) {
          for (const port of UNSEEN_PORTS) assert.ok(!allows(al, { ...r, port }), `${r.host}${r.target} on ${port}`);
          // The host on the other of 443/5000, when the workload never used that one for it.
          const other = (r.port ?? 443) === 443 ? 5000 : 443;
          if (!observed.some((o) => o.host === r.host && (o.port ?? 443) === other)) {
            assert.ok(!allows(al, { ...r, port: other }), `${r.host}${r.target} on ${other}`);
          }
        }
        assert.ok(!al.domains.includes('*') && !al.url_prefixes.some((e) => /^\*+$/.test(e.host)));
        for (const host of new Set(observed.map(authorityOf))) {
          const used = new Set(observed.filter((r) => authorityOf(r) === host).map((r) => r.method));
          if (used.has(probeMethod) || al.domains.includes(host)) continue;
          for (const r of observed.filter((o) => authorityOf(o) === host)) {
            assert.ok(!allows(al, { ...r, method: probeMethod }), `${probeMethod} allowed on ${host}${r.target}`);
          }
        }
        assert.ok(!hasErrors(lintAllowlist(al, { airut: false })));
      }),
      { numRuns: 300 },
    );
  });
  it('allows an unobserved path only below a directory where that host and method fanned out', () => {
    const unobserved = fc.tuple(
      fc.constantFrom(...HOSTS),
      fc.constantFrom(...METHODS),
      fc.array(fc.stringMatching(/^[a-z0-9*?[]{1,5}$/), { minLength: 1, maxLength: 4 }),
      fc.boolean(),
    );
    fc.assert(
      fc.property(workload, fc.array(unobserved, { maxLength: 30 }), (observed, probes) => {
        const al = suggestionAllowlist(suggestAllowlist(observed));
        // Probes: fresh paths, and observed paths with one segment changed (another path family).
        const mutated = observed.map((r, i) => {
          const { path } = splitTarget(r.target);
          const segments = path.split('/');
          segments[1 + (i % (segments.length - 1))] = 'zz';
          return req(r.method, r.host, segments.join('/'), r.port);
        });
        const candidates = [
          ...probes.map(([h, m, segs, q]) => req(m, h, '/' + segs.join('/') + (q ? '?x=1' : ''))),
          ...mutated,
        ];
        for (const probe of candidates) {
          if (!allows(al, probe) || al.domains.includes(authorityOf(probe))) continue;
          const mine = observed.filter((r) => authorityOf(r) === authorityOf(probe) && r.method === probe.method);
          const observedPaths = mine.map((r) => splitTarget(r.target));
          const probePath = splitTarget(probe.target);
          if (mine.some((r) => r.target === probe.target)) continue;
          // `path[?]*`: the path was observed with a query, and the probe has one.
          if (probePath.query !== null && observedPaths.some((o) => o.path === probePath.path && o.query !== null)) {
            continue;
          }
          const fannedOut = directories(probePath.path).some((dir) => {
            const names = new Set(
              observedPaths
                .filter((o) => o.path.startsWith(dir + '/'))
                .map((o) => o.path.slice(dir.length + 1).split('/')[0]!),
            );
            return names.size >= 2;
          });
          assert.ok(fannedOut, `${probe.method} ${probe.host}${probe.target} allowed without a fan-out`);
        }
      }),
      { numRuns: 300 },
    );
  });
  it('is deterministic: the same requests in any order give the same suggestion', () => {
    fc.assert(
      fc.property(
        workload.chain((w) => fc.tuple(fc.constant(w), fc.shuffledSubarray(w, { minLength: w.length }))),
        ([w, shuffled]) => {
          assert.deepEqual(suggestAllowlist(shuffled), suggestAllowlist(w));
        },
      ),
      { numRuns: 200 },
    );
  });
  it('is compact: never more entries than distinct (method, path) pairs observed', () => {
    fc.assert(
      fc.property(workload, (observed) => {
        const distinct = new Set(observed.map((r) => `${authorityOf(r)} ${r.method} ${r.target}`));
        assert.ok(suggestAllowlist(observed).entries.length <= distinct.size);
      }),
      { numRuns: 300 },
    );
  });
});
