import assert from 'node:assert/strict';
import { gzipSync, brotliCompressSync, deflateSync } from 'node:zlib';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { GraphqlRule } from '../../src/protocol/allowlist.js';
import {
  checkGraphqlOperation,
  checkGraphqlUrl,
  GRAPHQL_MAX_BODY_BYTES,
  graphqlHint,
} from '../../src/protocol/graphql-operations.js';
import { AllowlistSchema } from '../../src/protocol/allowlist.js';
import { admit, type Admission } from '../../src/proxy/http/admission.js';
import { bodyFiltersFor, decodeBody, judgeBody, type BodyVerdict } from '../../src/proxy/http/body-filters.js';

/**
 * The GraphQL operation filter, item by item from airut-behaviour.md §4f (151–156), then the tricks an agent would
 * use to get a mutation past an entry that allows only queries: aliases, fragments, batching, operationName games,
 * encodings. Every refusal names its detail, so a test that expects one reason cannot pass on another.
 */

const RULE: GraphqlRule = { queries: ['repository', 'viewer', 'search*'], mutations: ['addComment'] };
const body = (query: unknown, extra: Record<string, unknown> = {}) => JSON.stringify({ query, ...extra });

function detail(b: string | Buffer, rule: GraphqlRule = RULE): string {
  const v = checkGraphqlOperation(b, rule);
  return v.allowed ? `allowed ${v.type}/${v.fields.join(',')}` : v.detail;
}

describe('graphql operation filter: Airut §4f', () => {
  it('151: `{}` blocks every operation type', () => {
    assert.equal(detail(body('{ viewer { login } }'), {}), 'query:<blocked>');
    assert.equal(detail(body('mutation { addComment(x: 1) { id } }'), {}), 'mutation:<blocked>');
    assert.equal(detail(body('subscription { s }'), {}), 'subscription:<blocked>');
  });

  it('152: the checks in order, each with its detail', () => {
    assert.equal(detail(' '.repeat(GRAPHQL_MAX_BODY_BYTES) + body('{viewer{login}}')), '<too-large>');
    assert.equal(detail('{"query": '), '<unparseable>');
    assert.equal(detail(''), '<unparseable>', 'an empty body (a GET with ?query=) is refused');
    assert.equal(detail(Buffer.from([0xff, 0xfe])), '<unparseable>');
    // An overlong '"' (C0 A2) inside a string: a lenient decoder could end the string there; strict UTF-8 refuses.
    const overlong = Buffer.concat([
      Buffer.from('{"query": "{ viewer(x: \\"'),
      Buffer.from([0xc0, 0xa2]),
      Buffer.from('\\") { id } }"}'),
    ]);
    assert.equal(detail(overlong), '<unparseable>');
    assert.equal(detail('['.repeat(100_000) + ']'.repeat(100_000)), '<batched>');
    assert.equal(detail('{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000)), '<unparseable>', 'no query');
    assert.equal(detail(JSON.stringify([{ query: '{ viewer { login } }' }])), '<batched>');
    assert.equal(detail('"{ viewer { login } }"'), '<unparseable>');
    assert.equal(detail('null'), '<unparseable>');
    assert.equal(detail(body(undefined)), '<unparseable>');
    assert.equal(detail(body(42)), '<unparseable>');
    assert.equal(detail(body('{ viewer { ')), '<unparseable>');
    assert.equal(detail(body('fragment F on Query { viewer { login } }')), '<unparseable>', 'no operation');
  });

  it('152: nesting deep enough to exhaust the parser is refused, not thrown', () => {
    const deep = '{ viewer ' + '{ a '.repeat(50_000) + '}'.repeat(50_001);
    assert.equal(detail(body(deep)), '<unparseable>');
  });

  it('153: one operation ignores operationName; several need one that names exactly one', () => {
    assert.equal(detail(body('query A { viewer { login } }', { operationName: 'Nope' })), 'allowed query/viewer');
    const two = 'query A { viewer { login } } mutation B { deleteRepository(id: 1) { id } }';
    assert.equal(detail(body(two, { operationName: 'A' })), 'allowed query/viewer');
    assert.equal(detail(body(two, { operationName: 'B' })), 'deleteRepository');
    assert.equal(detail(body(two)), '<operation-name-invalid>');
    assert.equal(detail(body(two, { operationName: 'C' })), '<operation-name-invalid>');
    assert.equal(detail(body(two, { operationName: ['A'] })), '<operation-name-invalid>');
    const dup = 'query A { viewer { login } } mutation A { deleteRepository(id: 1) { id } }';
    assert.equal(detail(body(dup, { operationName: 'A' })), '<operation-name-invalid>', 'a name used twice');
  });

  it('154: aliases are ignored, inline fragments count two levels deep, spreads are refused', () => {
    assert.equal(detail(body('{ viewer: deleteRepository(id: 1) { id } }')), 'deleteRepository');
    assert.equal(detail(body('mutation { addComment: deleteRepository(id: 1) { id } }')), 'deleteRepository');
    assert.equal(detail(body('{ ... on Query { viewer { login } } }')), 'allowed query/viewer');
    assert.equal(detail(body('{ ... on Query { ... { repository { id } } } }')), 'allowed query/repository');
    assert.equal(detail(body('{ ... on Query { ... { ... { viewer { id } } } } }')), '<fragment-spread>');
    assert.equal(detail(body('mutation { ... on Mutation { deleteRepository(id: 1) { id } } }')), 'deleteRepository');
    const spread = 'query { ...F } fragment F on Query { viewer { login } }';
    assert.equal(detail(body(spread)), '<fragment-spread>');
    assert.equal(detail(body('query { ... { ...F } } fragment F on Query { viewer { login } }')), '<fragment-spread>');
    assert.equal(detail(body('{ viewer { ...F } } fragment F on User { login }')), 'allowed query/viewer', 'deeper ok');
  });

  it('155: shorthand is a query; every field must match; patterns are case-sensitive fnmatch', () => {
    assert.equal(detail(body('{ viewer { login } repository(name: "x") { id } }')), 'allowed query/viewer,repository');
    assert.equal(detail(body('{ viewer { login } organization(login: "x") { id } }')), 'organization');
    assert.equal(detail(body('{ searchIssues { id } }')), 'allowed query/searchIssues');
    assert.equal(detail(body('{ Viewer { login } }')), 'Viewer');
    assert.equal(detail(body('{ __schema { types { name } } }')), '__schema', '__schema is an ordinary field');
    assert.equal(detail(body('mutation { addComment(x: 1) { id } }')), 'allowed mutation/addComment');
    assert.equal(detail(body('subscription { issueUpdated { id } }')), 'subscription:<blocked>');
  });

  it('156: hints say what to change', () => {
    const v = checkGraphqlOperation(body('mutation { deleteRepository(id: 1) { id } }'), RULE);
    assert.ok(!v.allowed);
    assert.equal(graphqlHint(v, 'url_prefixes[0]'), 'add "deleteRepository" to graphql.mutations of url_prefixes[0]');
    const q = checkGraphqlOperation(body('{ org { id } }'), { mutations: ['x'] });
    assert.ok(!q.allowed);
    assert.match(graphqlHint(q, 'url_prefixes[2]'), /graphql\.queries of url_prefixes\[2\]/);
  });
});

describe('graphql filter: parameters in the URL', () => {
  it('refuses GraphQL parameters in the query string, however encoded; other parameters are fine', () => {
    for (const target of [
      '/graphql?query=mutation%7Bx%7D',
      '/graphql?a=1&operationName=B',
      '/graphql?variables={}',
      '/graphql?extensions=x',
      '/graphql?%71uery=x',
      '/graphql?query',
    ]) {
      const v = checkGraphqlUrl(target);
      assert.ok(v && !v.allowed && v.detail === '<query-string>', target);
      assert.match(graphqlHint(v, 'r'), /JSON body/);
    }
    for (const target of ['/graphql', '/graphql?', '/graphql?foo=1', '/graphql?Query=x', '/query?x=1']) {
      assert.equal(checkGraphqlUrl(target), null, target);
    }
  });
});

/** The proxy's view: an admitted POST to `host` + `target` under `allowlist`, and the filters that apply to it. */
function admitted(allowlist: unknown, host: string, target: string) {
  const admission = admit(
    {
      listener: { scheme: 'http', port: 80 },
      method: 'POST',
      rawTarget: target,
      hostHeaders: [host],
      sni: null,
      connection: [],
    },
    AllowlistSchema.parse(allowlist),
  ) as Admission;
  assert.equal(admission.kind, 'allow');
  const filters = bodyFiltersFor(admission);
  assert.ok(filters);
  return { admission, filters, allowlist: AllowlistSchema.parse(allowlist) };
}

describe('graphql filter: request encodings', () => {
  const query = Buffer.from(body('mutation { deleteRepository(id: 1) { id } }'));
  const gh = admitted({ url_prefixes: [{ host: 'gh.test', path: '/graphql', graphql: RULE }] }, 'gh.test', '/graphql');
  const judged = (raw: Buffer | 'too-large', enc?: string): string => {
    const v: BodyVerdict = judgeBody(raw, enc, gh.admission, gh.filters, gh.allowlist);
    if (v.kind === 'pass') return 'pass';
    return /GraphQL operation '([^']*)'/.exec(v.refusal.reason)?.[1] ?? v.refusal.reason;
  };

  it('undoes gzip, deflate, br and stacked codings before judging', () => {
    for (const [enc, data] of [
      ['gzip', gzipSync(query)],
      ['x-gzip', gzipSync(query)],
      ['deflate', deflateSync(query)],
      ['br', brotliCompressSync(query)],
      ['gzip, br', brotliCompressSync(gzipSync(query))],
      ['identity', query],
    ] as const) {
      assert.equal(judged(data, enc), 'deleteRepository', enc);
    }
    const allowed = gzipSync(body('{ viewer { login } }'));
    const v = judgeBody(allowed, 'gzip', gh.admission, gh.filters, gh.allowlist);
    assert.deepEqual(v, { kind: 'pass', body: allowed, decoded: false, annotations: ['graphql-op: query/viewer'] });
  });

  it('refuses an encoding it cannot undo, a corrupt body and a small body that expands past the bound', () => {
    assert.equal(judged(query, 'zstd'), '<unparseable>');
    assert.equal(judged(query, 'gzip'), '<unparseable>');
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x20));
    assert.ok(bomb.length < 100_000);
    assert.equal(judged(bomb, 'gzip'), '<too-large>');
    assert.equal(judged('too-large'), '<too-large>');
    assert.deepEqual(decodeBody(query, undefined, 1024), query);
    assert.equal(decodeBody(gzipSync(Buffer.alloc(2048)), 'gzip', 1024), 'too-large');
  });

  it('one decoding serves both filters when a GraphQL entry is also an Anthropic Messages endpoint', () => {
    const both = admitted(
      { url_prefixes: [{ host: 'api.anthropic.com', path: '/v1/messages', graphql: RULE }] },
      'api.anthropic.com',
      '/v1/messages',
    );
    assert.deepEqual(both.filters, { graphql: RULE, messages: true });
    const doc = { query: '{ viewer { login } }', tools: [{ type: 'web_fetch_1', allowed_domains: ['evil.example'] }] };
    const v = judgeBody(gzipSync(JSON.stringify(doc)), 'gzip', both.admission, both.filters, both.allowlist);
    assert.equal(v.kind, 'pass');
    assert.ok(v.kind === 'pass' && v.decoded);
    assert.deepEqual(JSON.parse(v.body.toString()), { ...doc, tools: [{ type: 'web_fetch_1', allowed_domains: [] }] });
    assert.deepEqual(v.annotations, [
      'graphql-op: query/viewer',
      'tool-domains: web_fetch_1 dropped 1 of 1 (evil.example)',
    ]);
    const mutation = gzipSync(JSON.stringify({ ...doc, query: 'mutation { deleteRepository { id } }' }));
    const refused = judgeBody(mutation, 'gzip', both.admission, both.filters, both.allowlist);
    assert.ok(refused.kind === 'refuse' && refused.refusal.code === 'graphql_operation_blocked');
  });
});

describe('graphql filter: properties', () => {
  it('never throws, and never allows a body whose operation has a field the rule does not list', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json(), fc.uint8Array({ maxLength: 200 })), (input) => {
        const v = checkGraphqlOperation(typeof input === 'string' ? input : Buffer.from(input), RULE);
        if (v.allowed) {
          const allowedFields = v.type === 'query' ? ['repository', 'viewer'] : ['addComment'];
          for (const f of v.fields) assert.ok(allowedFields.includes(f) || f.startsWith('search'), f);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('a mutation field hidden under any alias, fragment nesting or operation mix is never allowed', () => {
    const wrap = fc.constantFrom(
      (s: string) => s,
      (s: string) => `... on Mutation { ${s} }`,
      (s: string) => `... { ... on Mutation { ${s} } }`,
      (s: string) => `addComment(x: 1) { id } ${s}`,
    );
    fc.assert(
      fc.property(
        fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,12}$/),
        fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,12}$/),
        wrap,
        fc.boolean(),
        (field, alias, w, named) => {
          fc.pre(field !== 'addComment');
          const selection = w(`${alias}: ${field} { id }`);
          const doc = `mutation${named ? ' M' : ''} { ${selection} } query Q { viewer { login } }`;
          const v = checkGraphqlOperation(body(doc, { operationName: named ? 'M' : 'Q' }), RULE);
          if (named) assert.ok(!v.allowed, doc);
          else assert.ok(v.allowed && v.type === 'query', doc);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
