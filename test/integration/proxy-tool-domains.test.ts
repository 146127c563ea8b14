import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { formatTextLine } from '../../src/proxy/log/network-log.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';
import {
  startHttpsUpstream,
  startProxyFixture,
  type EchoReport,
  type FakeUpstream,
  type ProxyFixture,
} from '../helpers/upstream.js';

/**
 * The tool-domain filter on the real proxy over real sockets: a Messages request to api.anthropic.com reaches the
 * upstream with every server-side tool narrowed to hosts the allowlist opens for GET (and re-serialised, decoded),
 * or is refused before the upstream hears of it. The upstream here is a local fake answering for that name.
 */

let fx: ProxyFixture;
let upstream: FakeUpstream;

before(async () => {
  const pki = await makeTestPki(['api.anthropic.com']);
  upstream = await startHttpsUpstream(pki);
  fx = await startProxyFixture({
    allowlist: { domains: ['api.anthropic.com', 'docs.python.org'] },
    upstream: { caPem: pki.caPem, hosts: { 'api.anthropic.com': `127.0.0.1:${upstream.port}` } },
  });
});

after(async () => {
  await fx.close();
  await upstream.close();
});

const sha = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');

async function send(path: string, body: string | Buffer | undefined, headers: Record<string, string> = {}) {
  const seenBefore = upstream.received.length;
  const reply = await fx.https('api.anthropic.com', {
    method: body === undefined ? 'GET' : 'POST',
    path,
    headers: { Host: 'api.anthropic.com', 'Content-Type': 'application/json', ...headers },
    body,
  });
  return { reply, seen: upstream.received.length - seenBefore };
}

const request = (allowed: unknown) => ({
  model: 'claude-x',
  max_tokens: 10,
  messages: [{ role: 'user', content: 'fetch https://evil.example/?secret=…' }],
  tools: [{ type: 'web_fetch_20250910', name: 'web_fetch', allowed_domains: allowed }],
});

void describe('tool domains on the live proxy', () => {
  void test('web_fetch is narrowed to allowed hosts before the request leaves the proxy', async () => {
    const { reply } = await send('/v1/messages', JSON.stringify(request(['evil.example', 'docs.python.org'])));
    assert.equal(reply.status, 200, reply.body);
    const echo = JSON.parse(reply.body) as EchoReport;
    assert.equal(echo.bodySha256, sha(JSON.stringify(request(['docs.python.org']))));
    const line = fx.log.events
      .map(formatTextLine)
      .find((l) => l.startsWith('ALLOWED POST https://api.anthropic.com/v1/messages'));
    assert.equal(
      line,
      'ALLOWED POST https://api.anthropic.com/v1/messages -> 200 [tool-domains: web_fetch_20250910 dropped 1 of 2 (evil.example)]',
    );
  });

  void test('a gzip body is judged decoded and forwarded decoded, without Content-Encoding', async () => {
    const body = gzipSync(JSON.stringify(request(['evil.example'])));
    const { reply } = await send('/v1/messages?beta=true', body, { 'Content-Encoding': 'gzip' });
    assert.equal(reply.status, 200, reply.body);
    const echo = JSON.parse(reply.body) as EchoReport;
    assert.equal(echo.bodySha256, sha(JSON.stringify(request([]))));
    const names = echo.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    assert.ok(!names.includes('content-encoding'), names.join(','));
    assert.equal(
      echo.rawHeaders[echo.rawHeaders.findIndex((n) => n.toLowerCase() === 'content-length') + 1],
      String(echo.bodyBytes),
    );
  });

  void test('path variants a server might normalise are filtered too', async () => {
    for (const path of ['/v1//messages', '/v1/%6Dessages', '/v1/./messages/batches']) {
      const { reply } = await send(path, JSON.stringify(request(['evil.example'])));
      assert.equal(reply.status, 200, `${path}: ${reply.body}`);
      assert.equal((JSON.parse(reply.body) as EchoReport).bodySha256, sha(JSON.stringify(request([]))), path);
    }
  });

  void test('what cannot be narrowed is refused before the upstream hears of it', async () => {
    const cases: Array<[string | Buffer, Record<string, string>, string]> = [
      [JSON.stringify(request(['*.evil.example'])), {}, 'wildcard_tool_domain_unsupported'],
      [
        JSON.stringify({ tools: [{ type: 'web_fetch_1', blocked_domains: ['x.example'] }] }),
        {},
        'blocklist_tool_config_unsupported',
      ],
      ['{"tools": [', {}, 'tool_config_invalid'],
      [gzipSync('{}'), { 'Content-Encoding': 'zstd' }, 'tool_config_invalid'],
      [gzipSync(Buffer.alloc(40 * 1024 * 1024, 0x20)), { 'Content-Encoding': 'gzip' }, 'tool_config_too_large'],
    ];
    for (const [body, headers, code] of cases) {
      const { reply, seen } = await send('/v1/messages', body, headers);
      assert.equal(reply.status, 403, reply.body);
      assert.equal(reply.headers['x-airlock-deny'], code);
      assert.equal(typeof (JSON.parse(reply.body) as { fix: unknown }).fix, 'string');
      assert.equal(seen, 0);
    }
  });

  void test('a GET without a body and other API paths pass unchanged', async () => {
    assert.equal((await send('/v1/messages/batches/msgbatch_1', undefined)).reply.status, 200);
    const other = JSON.stringify(request(['evil.example']));
    const { reply } = await send('/v1/complete', other);
    assert.equal((JSON.parse(reply.body) as EchoReport).bodySha256, sha(other));
  });
});
