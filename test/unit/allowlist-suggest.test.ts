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
import { decide, splitTarget } from '../../src/protocol/policy.js';
import type { Allowlist } from '../../src/protocol/allowlist.js';

function req(method: string, host: string, target: string): ObservedRequest {
  return { method, host, target };
}

function allows(allowlist: Allowlist, r: ObservedRequest): boolean {
  return decide({ method: r.method, host: r.host, target: r.target }, allowlist).allowed;
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
    ),
    { minLength: 1, maxLength: 8 },
  )
  .map((groups) =>
    groups.flatMap(([host, method, [prefix, items], withQuery]) =>
      items.map((item, i) =>
        req(method, host, `/${[...prefix, item].join('/')}${withQuery && i % 2 === 0 ? `?page=${i}` : ''}`),
      ),
    ),
  );

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
        assert.ok(!al.domains.includes('*') && !al.url_prefixes.some((e) => /^\*+$/.test(e.host)));
        for (const host of HOSTS) {
          const used = new Set(observed.filter((r) => r.host === host).map((r) => r.method));
          if (used.has(probeMethod) || al.domains.includes(host)) continue;
          for (const r of observed.filter((o) => o.host === host)) {
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
          return req(r.method, r.host, segments.join('/'));
        });
        const candidates = [
          ...probes.map(([h, m, segs, q]) => req(m, h, '/' + segs.join('/') + (q ? '?x=1' : ''))),
          ...mutated,
        ];
        for (const probe of candidates) {
          if (!allows(al, probe) || al.domains.includes(probe.host)) continue;
          const mine = observed.filter((r) => r.host === probe.host && r.method === probe.method);
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
        const distinct = new Set(observed.map((r) => `${r.host} ${r.method} ${r.target}`));
        assert.ok(suggestAllowlist(observed).entries.length <= distinct.size);
      }),
      { numRuns: 300 },
    );
  });
});
