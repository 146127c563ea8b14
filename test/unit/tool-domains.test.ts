import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AllowlistSchema } from '../../src/protocol/allowlist.js';
import { isMessagesRequest, trimToolDomains, type ToolDomainsVerdict } from '../../src/protocol/tool-domains.js';

/**
 * Anthropic server-side tools reach the internet from Anthropic's side, so the proxy narrows their
 * `allowed_domains` to what the allowlist opens for GET (airut-behaviour.md §4g, items 157–159) and refuses what it
 * cannot narrow. Each case names the verdict it expects, and rewritten bodies are compared whole.
 */

const ALLOWLIST = AllowlistSchema.parse({
  domains: ['docs.python.org', '*.readthedocs.io', 'api.anthropic.com'],
  url_prefixes: [
    { host: 'pypi.org', methods: ['GET', 'HEAD'] },
    { host: 'files.example', methods: [] },
    { host: 'api.github.com', path: '/repos/*', methods: ['GET'] },
    { host: 'upload.example', methods: ['POST'] },
  ],
});

const trim = (doc: unknown): ToolDomainsVerdict => trimToolDomains(JSON.stringify(doc), ALLOWLIST);
function rewritten(doc: unknown): unknown {
  const v = trim(doc);
  assert.equal(v.kind, 'rewrite', JSON.stringify(v));
  return JSON.parse((v as { body: string }).body);
}
const blockCode = (doc: unknown) => {
  const v = trim(doc);
  return v.kind === 'block' ? v.code : v.kind;
};
const fetchTool = (allowed?: unknown, extra: Record<string, unknown> = {}) => ({
  type: 'web_fetch_20250910',
  name: 'web_fetch',
  ...(allowed === undefined ? {} : { allowed_domains: allowed }),
  ...extra,
});

describe('tool domains: which requests (157)', () => {
  it('api.anthropic.com Messages paths, including ones a server may normalise', () => {
    for (const target of [
      '/v1/messages',
      '/v1/messages?beta=true',
      '/v1/messages/',
      '/v1/messages/count_tokens',
      '/v1/messages/batches',
      '/v1//messages',
      '/v1/./messages',
      '/V1/Messages',
      '/v1/%6dessages',
      '//v1/messages',
    ]) {
      assert.ok(isMessagesRequest('api.anthropic.com', target), target);
    }
    for (const target of ['/v1/messagesx', '/v1/complete', '/v2/messages', '/', '/v1']) {
      assert.ok(!isMessagesRequest('api.anthropic.com', target), target);
    }
    assert.ok(!isMessagesRequest('api.anthropic.com.evil', '/v1/messages'));
    assert.ok(!isMessagesRequest('example.com', '/v1/messages'));
  });
});

describe('tool domains: bodies (158)', () => {
  it('refuses a body over 32 MiB and one that is not JSON; leaves an empty body and a scalar alone', () => {
    assert.equal(trimToolDomains(Buffer.alloc(32 * 1024 * 1024 + 1, 0x20), ALLOWLIST).kind, 'block');
    assert.deepEqual(trimToolDomains('{"tools": [', ALLOWLIST), {
      kind: 'block',
      code: 'tool_config_invalid',
      reason: 'the Messages request body is not valid JSON',
    });
    assert.equal(
      (trimToolDomains(Buffer.from([0xff, 0xfe, 0, 0]), ALLOWLIST) as { code: string }).code,
      'tool_config_invalid',
    );
    assert.deepEqual(trimToolDomains('', ALLOWLIST), { kind: 'pass' }, 'a GET of a batch has no body');
    assert.deepEqual(trimToolDomains('  \n', ALLOWLIST), { kind: 'pass' });
    assert.deepEqual(trimToolDomains('"hello"', ALLOWLIST), { kind: 'pass' });
    assert.deepEqual(trimToolDomains('42', ALLOWLIST), { kind: 'pass' });
  });

  it('re-serialises every JSON document, so a duplicate key cannot hide a tool from the filter', () => {
    const body = '{"tools":[{"type":"web_fetch_20250910","allowed_domains":["evil.example"]}],"tools":[]}';
    const v = trimToolDomains(body, ALLOWLIST);
    assert.deepEqual(v, { kind: 'rewrite', body: '{"tools":[]}', annotation: null });
    const plain = { model: 'm', messages: [{ role: 'user', content: 'hi ☃' }] };
    assert.deepEqual(trim(plain), { kind: 'rewrite', body: JSON.stringify(plain), annotation: null });
  });
});

describe('tool domains: tools (159)', () => {
  it('keeps only hosts the allowlist opens for GET on every path', () => {
    const doc = {
      model: 'claude',
      tools: [
        fetchTool([
          'docs.python.org',
          'evil.example',
          'pypi.org',
          'files.example',
          'api.github.com',
          'upload.example',
          'x.readthedocs.io',
          'DOCS.python.org.',
        ]),
      ],
    };
    const v = trim(doc);
    assert.equal(v.kind, 'rewrite');
    assert.equal(
      (v as { annotation: string }).annotation,
      'tool-domains: web_fetch_20250910 dropped 3 of 8 (evil.example, api.github.com, upload.example)',
    );
    assert.deepEqual((rewritten(doc) as { tools: Array<{ allowed_domains: string[] }> }).tools[0]!.allowed_domains, [
      'docs.python.org',
      'pypi.org',
      'files.example',
      'x.readthedocs.io',
      'DOCS.python.org.',
    ]);
  });

  it('injects an empty list where none was given, except for web search, whose key is removed', () => {
    const out = rewritten({
      tools: [
        fetchTool(),
        { type: 'web_search_20250305', name: 'web_search', allowed_domains: null },
        { type: 'code_execution_20250522', name: 'code_execution' },
        { type: 'bash_20250124', name: 'bash' },
        { type: 'computer_20250124', name: 'computer', display_width_px: 1 },
      ],
    }) as { tools: Array<Record<string, unknown>> };
    assert.deepEqual(out.tools[0]!.allowed_domains, []);
    assert.ok(!('allowed_domains' in out.tools[1]!));
    const v = trim({ tools: [fetchTool(), { type: 'bash_20250124', name: 'bash' }] });
    assert.equal(
      (v as { annotation: string }).annotation,
      'tool-domains: web_fetch_20250910 forced []; bash_20250124 forced []',
    );
    assert.equal((trim({ tools: [fetchTool(['pypi.org'])] }) as { annotation: unknown }).annotation, null);
    assert.deepEqual(out.tools[2]!.allowed_domains, []);
    assert.deepEqual(out.tools[3]!.allowed_domains, []);
    assert.deepEqual(out.tools[4]!.allowed_domains, []);
  });

  it('matches tool types case-insensitively and leaves custom tools untouched', () => {
    const custom = {
      name: 'get_weather',
      description: 'x',
      input_schema: { type: 'object' },
      allowed_domains: ['evil.example'],
    };
    const out = rewritten({ tools: [fetchTool(['evil.example'], { type: 'WEB_FETCH_20990101' }), custom] }) as {
      tools: Array<Record<string, unknown>>;
    };
    assert.deepEqual(out.tools[0]!.allowed_domains, []);
    assert.deepEqual(out.tools[1], custom);
  });

  it('finds tools lists anywhere in the document (batches nest them)', () => {
    const doc = { requests: [{ custom_id: 'a', params: { tools: [fetchTool(['evil.example', 'pypi.org'])] } }] };
    const out = rewritten(doc) as { requests: Array<{ params: { tools: Array<{ allowed_domains: string[] }> } }> };
    assert.deepEqual(out.requests[0]!.params.tools[0]!.allowed_domains, ['pypi.org']);
  });

  it('refuses blocked_domains and anything in allowed_domains that is not a plain host name', () => {
    assert.equal(
      blockCode({ tools: [fetchTool(undefined, { blocked_domains: ['evil.example'] })] }),
      'blocklist_tool_config_unsupported',
    );
    assert.equal(blockCode({ tools: [fetchTool(['pypi.org'], { blocked_domains: [] })] }), 'rewrite');
    for (const bad of ['*.evil.example', 'evil?.example', '.evil.example', 'evil .example', '', 42, null, ['x']]) {
      assert.equal(
        blockCode({ tools: [fetchTool(['pypi.org', bad])] }),
        'wildcard_tool_domain_unsupported',
        JSON.stringify(bad),
      );
    }
  });

  it('drops entries that are not host names (paths, userinfo); a port is ignored, as for requests', () => {
    const out = rewritten({ tools: [fetchTool(['pypi.org/evil', 'pypi.org:8443', 'user@pypi.org', 'pypi.org'])] }) as {
      tools: Array<{ allowed_domains: string[] }>;
    };
    assert.deepEqual(out.tools[0]!.allowed_domains, ['pypi.org:8443', 'pypi.org']);
  });
});

describe('tool domains: property', () => {
  const OPEN = new Set(['docs.python.org', 'pypi.org', 'files.example', 'api.anthropic.com']);
  it('no network tool in a forwarded body allows a host the allowlist does not open for GET', () => {
    const host = fc.constantFrom(
      'docs.python.org',
      'pypi.org',
      'evil.example',
      'api.github.com',
      'upload.example',
      'files.example',
    );
    const tool = fc.record({
      type: fc.constantFrom(
        'web_fetch_1',
        'WEB_SEARCH_2',
        'code_execution_3',
        'bash_4',
        'computer_5',
        'custom',
        'text_editor_6',
      ),
      allowed_domains: fc.option(fc.array(host, { maxLength: 5 }), { nil: undefined }),
    });
    const doc = fc.letrec((tie) => ({
      node: fc.oneof(
        { depthSize: 'small' },
        fc.record({ tools: fc.array(tool, { maxLength: 4 }) }),
        fc.record({ nested: tie('node'), other: fc.integer() }),
        fc.array(tie('node'), { maxLength: 3 }),
      ),
    })).node;
    fc.assert(
      fc.property(doc, (d) => {
        const v = trim(d);
        if (v.kind !== 'rewrite') return;
        const stack: unknown[] = [JSON.parse(v.body)];
        while (stack.length) {
          const n = stack.pop();
          if (Array.isArray(n)) stack.push(...(n as unknown[]));
          else if (n && typeof n === 'object') {
            const o = n as Record<string, unknown>;
            const type = typeof o.type === 'string' ? o.type.toLowerCase() : '';
            if (
              /^(web_fetch_|web_search_|code_execution_|bash_|computer_)/.test(type) &&
              Array.isArray(o.allowed_domains)
            ) {
              for (const h of o.allowed_domains as string[]) assert.ok(OPEN.has(h), `${type} kept ${h}`);
            }
            stack.push(...Object.values(o));
          }
        }
      }),
      { numRuns: 1500 },
    );
  });
});
