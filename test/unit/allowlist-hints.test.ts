import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parse } from 'yaml';
import { AllowlistSchema } from '../../src/protocol/allowlist.js';
import { hasErrors, lintAllowlist } from '../../src/protocol/allowlist-lint.js';
import { decide, hintFor } from '../../src/protocol/policy.js';

/**
 * A hint is pasted into a policy file by a person (or a script) who trusts it: it must be valid YAML under
 * `url_prefixes:`, allow the refused request, pass the linter, and allow nothing else on that host — whatever the
 * sandbox put in the path, since the path is attacker-chosen.
 */

const pathChar = fc.constantFrom(
  'a',
  'b',
  '/',
  '*',
  '?',
  '[',
  ']',
  '!',
  '"',
  "'",
  ':',
  '#',
  ' ',
  '\\',
  '%',
  '-',
  '{',
  '}',
  ',',
  '\n',
);
const target = fc
  .tuple(fc.array(pathChar, { maxLength: 12 }), fc.option(fc.array(pathChar, { maxLength: 6 })))
  .map(([p, q]) => '/' + p.join('') + (q === null ? '' : '?' + q.join('')));
const host = fc.constantFrom('api.example.com', 'registry.test', '10.0.0.7', 'xn--bcher-kva.example');
const method = fc.constantFrom('GET', 'post', 'Delete', 'PROPFIND');

function pasted(hint: string) {
  const raw: unknown = parse(`url_prefixes:\n${hint.replace(/^/gm, '  ')}\n`);
  return AllowlistSchema.parse(raw);
}

describe('hints are pasteable YAML that allow exactly the refused request', () => {
  it('for generated requests, including wildcard characters, quotes and newlines in the path', () => {
    fc.assert(
      fc.property(method, host, target, (m, h, t) => {
        const refused = decide({ method: m, host: h, target: t }, { domains: [], url_prefixes: [] });
        if (refused.allowed || refused.code === 'invalid_path') return;
        assert.equal(refused.hint, hintFor(m.toUpperCase(), h, t));
        assert.ok(!refused.hint.includes('\n'), 'one line');
        const allowlist = pasted(refused.hint);
        assert.equal(allowlist.url_prefixes.length, 1);
        assert.ok(!hasErrors(lintAllowlist(allowlist, { airut: false })), refused.hint);
        assert.ok(decide({ method: m, host: h, target: t }, allowlist).allowed, `${refused.hint} does not allow ${t}`);
        // Nothing else: another path on the host, another method, another host.
        const other = t.includes('?') ? t.replace('?', 'x?') : t + 'x';
        assert.ok(!decide({ method: m, host: h, target: other }, allowlist).allowed, `${refused.hint} allows ${other}`);
        assert.ok(!decide({ method: 'PATCH', host: h, target: t }, allowlist).allowed);
        assert.ok(!decide({ method: m, host: 'other.test', target: t }, allowlist).allowed);
      }),
      { numRuns: 2000 },
    );
  });
  it('the form a user sees', () => {
    assert.equal(
      hintFor('POST', 'api.github.com', '/repos/acme/app/issues'),
      '- {host: "api.github.com", path: "/repos/acme/app/issues", methods: [POST]}',
    );
    assert.equal(hintFor('GET', 'cdn.test', '/a*b?x=1'), '- {host: "cdn.test", path: "/a[*]b[?]*", methods: [GET]}');
  });
});
