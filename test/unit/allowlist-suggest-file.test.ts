import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { AllowlistSchema } from '../../src/protocol/allowlist.js';
import { suggestAllowlist, type ObservedRequest } from '../../src/protocol/allowlist-suggest.js';
import { decide } from '../../src/protocol/policy.js';
import { evidenceFromLog, renderSuggestion } from '../../src/cli/config/suggestion.js';

function record(
  decision: string,
  code: string,
  method: string,
  host: string,
  path: string,
  at: { scheme?: 'http' | 'https'; port?: number } = {},
): string {
  const scheme = at.scheme ?? 'https';
  const shownPort = at.port === undefined || at.port === (scheme === 'https' ? 443 : 80) ? '' : `:${at.port}`;
  const url = `${scheme}://${host}${shownPort}${path}`;
  return JSON.stringify({ v: 1, event: 'request', decision, code, method, host, path, url, port: at.port });
}

const requests: ObservedRequest[] = [
  ...[1, 2, 3].map((n) => ({ method: 'GET', host: 'api.test', target: `/items/${n}` })),
  { method: 'POST', host: 'api.test', target: '/items' },
  { method: 'GET', host: 'weird.test', target: '/*star' },
  { method: 'GET', host: 'weird.test', target: '/#hash: yes' },
];

describe('allowlist suggest: the file', () => {
  it('a new file parses back to exactly the suggested allowlist, with a comment per entry', () => {
    const text = renderSuggestion(suggestAllowlist(requests));
    const allowlist = AllowlistSchema.parse(parse(text));
    for (const r of requests) assert.ok(decide(r, allowlist).allowed, `${r.method} ${r.host}${r.target}\n${text}`);
    assert.match(text, /^# Suggested by `airlock allowlist suggest`/);
    assert.match(
      text,
      /\n {2}# 3 requests: GET \/items\/1, GET \/items\/2, GET \/items\/3\n {2}- host: api\.test\n {4}path: \/items\/\*\n {4}methods: \[GET\]\n/,
    );
    assert.equal(renderSuggestion(suggestAllowlist([...requests].reverse())), text, 'deterministic');
  });
  it('--merge keeps the existing entries, their order and comments, and adds only what is missing', () => {
    const existing = [
      '# Our policy. Ask #infra before widening it.',
      'domains: [pypi.org]  # Python packages',
      'url_prefixes:',
      '  # the issues API, read-only',
      '  - host: api.test',
      '    path: /items/*',
      '    methods: [GET]',
      '',
    ].join('\n');
    const before = AllowlistSchema.parse(parse(existing));
    const suggestion = suggestAllowlist(requests, before);
    assert.equal(suggestion.alreadyAllowed, 3);
    const merged = renderSuggestion(suggestion, existing);
    for (const line of [
      '# Our policy. Ask #infra before widening it.',
      '# Python packages',
      '# the issues API, read-only',
    ]) {
      assert.ok(merged.includes(line), `lost "${line}":\n${merged}`);
    }
    const after = AllowlistSchema.parse(parse(merged));
    assert.deepEqual(after.domains, ['pypi.org']);
    assert.deepEqual(after.url_prefixes[0], before.url_prefixes[0], 'existing entries come first, unchanged');
    assert.deepEqual(
      after.url_prefixes.slice(1).map((e) => `${e.methods.join(',')} ${e.host}${e.path}`),
      suggestion.entries.map((e) => (e.kind === 'url_prefix' ? `${e.methods.join(',')} ${e.host}${e.path}` : e.host)),
    );
    for (const r of requests) assert.ok(decide(r, after).allowed);
  });
  it('a path cannot inject YAML or hide itself in a comment', () => {
    const hostile: ObservedRequest[] = [
      { method: 'GET', host: 'a.test', target: '/x\n  - {host: evil.test}\n# ' },
      { method: 'GET', host: 'a.test', target: '/y\u202egpj.exe' },
    ];
    const text = renderSuggestion(suggestAllowlist(hostile));
    const allowlist = AllowlistSchema.parse(parse(text));
    assert.deepEqual(
      allowlist.url_prefixes.map((e) => e.host),
      ['a.test', 'a.test'],
    );
    for (const r of hostile) assert.ok(decide(r, allowlist).allowed);
    assert.match(text, /# 1 request: GET \/y\\u\{202e\}gpj\.exe/);
    const comments = text.split('\n').filter((l) => l.trimStart().startsWith('#'));
    assert.ok(!comments.some((l) => l.includes('\u202e')), 'no raw bidi override in a comment');
  });
  it('merging into a file without url_prefixes, or with a flow list, works', () => {
    for (const existing of ['domains: [pypi.org]\n', 'url_prefixes: []\n', '# only a comment\n{}\n']) {
      const merged = renderSuggestion(suggestAllowlist(requests), existing);
      const after = AllowlistSchema.parse(parse(merged));
      for (const r of requests) assert.ok(decide(r, after).allowed, merged);
    }
  });
});

describe('allowlist suggest: which log records are evidence', () => {
  it('allowed, would_block and policy refusals; not safety refusals, GraphQL refusals or garbage', () => {
    const log = [
      record('allowed', 'allowed', 'GET', 'a.test', '/x'),
      record('would_block', 'host_not_allowed', 'GET', 'b.test', '/y'),
      record('blocked', 'path_not_allowed', 'POST', 'c.test', '/z'),
      record('blocked', 'method_not_allowed', 'PUT', 'c.test', '/z'),
      record('blocked', 'connect_not_allowed', 'CONNECT', 'd.test', '/'),
      record('blocked', 'invalid_path', 'GET', 'e.test', '/a/../b'),
      record('blocked', 'upstream_address_not_allowed', 'GET', 'f.test', '/'),
      record('blocked', 'graphql_operation_blocked', 'POST', 'g.test', '/graphql'),
      JSON.stringify({ v: 1, event: 'dns', name: 'h.test' }),
      JSON.stringify({ v: 1, event: 'error', decision: 'error', method: 'GET', host: 'i.test', path: '/' }),
      'not json',
      '["an", "array"]',
    ].join('\n');
    const e = evidenceFromLog(log);
    assert.deepEqual(
      e.requests.map((r) => `${r.method} ${r.host}${r.target}`),
      ['GET a.test/x', 'GET b.test/y', 'POST c.test/z', 'PUT c.test/z'],
    );
    assert.equal(e.skipped, 4);
    assert.equal(e.unreadable, 2);
  });
  it('the port and scheme a request went to come along, and the file names non-default ports', () => {
    const log = [
      record('would_block', 'host_not_allowed', 'GET', 'registry.test', '/v2/', { port: 5000 }),
      record('would_block', 'port_not_allowed', 'GET', 'api.test', '/x', { scheme: 'http', port: 8080 }),
      record('allowed', 'allowed', 'GET', 'api.test', '/y', { scheme: 'http', port: 80 }),
      // A log from before ports were judged: no port field, so the scheme's default.
      record('allowed', 'allowed', 'GET', 'old.test', '/z'),
    ].join('\n');
    const e = evidenceFromLog(log);
    assert.deepEqual(
      e.requests.map((r) => [r.scheme, r.host, r.port]),
      [
        ['https', 'registry.test', 5000],
        ['http', 'api.test', 8080],
        ['http', 'api.test', 80],
        ['https', 'old.test', undefined],
      ],
    );
    const text = renderSuggestion(suggestAllowlist(e.requests));
    const allowlist = AllowlistSchema.parse(parse(text));
    assert.deepEqual(allowlist.url_prefixes.map((p) => p.host).sort(), [
      'api.test',
      'api.test:8080',
      'old.test',
      'registry.test:5000',
    ]);
  });
});
