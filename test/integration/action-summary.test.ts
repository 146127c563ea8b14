import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LoadedPolicy } from '../../src/cli/config/types.js';
import { SandboxConfigSchema } from '../../src/protocol/sandbox-config.js';
import { secretValues } from '../../src/action/secrets.js';
import { parse } from 'yaml';
import { AllowlistSchema } from '../../src/protocol/allowlist.js';
import { decide } from '../../src/protocol/policy.js';
import { fenced, renderSummary } from '../../src/action/summary.js';
import { tallyNetworkLog } from '../../src/protocol/network-log-records.js';
import { suggestAllowlist } from '../../src/protocol/allowlist-suggest.js';
import { evidenceFromLog, renderSuggestion } from '../../src/cli/config/suggestion.js';

const line = (o: object) => JSON.stringify({ v: 1, ts: '2026-01-01T00:00:00.000Z', ...o });
const blocked = (host: string, path: string, extra: object = {}) =>
  line({
    event: 'request',
    decision: 'blocked',
    method: 'GET',
    host,
    path,
    url: `https://${host}${path}`,
    status: 403,
    code: 'host_not_allowed',
    ...extra,
  });

const facts = {
  exitCode: 0,
  baseRef: 'main',
  baseSha: 'b'.repeat(40),
  prSha: 'c'.repeat(40),
  mode: 'merge' as const,
  allowlistSha256: 'd'.repeat(64),
  networkSandbox: true,
  audit: false,
  suggestion: null,
};

void describe('job summary from the JSONL network log', () => {
  void it('counts decisions and groups blocked requests by host, with the entries that would allow them', () => {
    const log = [
      line({ event: 'start', policy_sha256: 'd'.repeat(64) }),
      line({
        event: 'request',
        decision: 'allowed',
        method: 'GET',
        host: 'registry.npmjs.org',
        path: '/x',
        status: 200,
        code: 'allowed',
      }),
      blocked('evil.example', '/a'),
      blocked('evil.example', '/a'),
      blocked('evil.example', '/b'),
      blocked('other.example', '/'),
      line({ event: 'error', decision: 'error', method: 'GET', host: 'up.example', path: '/', reason: 'ECONNRESET' }),
      line({ event: 'dns', name: 'x', type: 'A', answer: '10.0.0.1' }),
      'not json',
      '',
    ].join('\n');
    const t = tallyNetworkLog(log);
    assert.deepEqual(
      { allowed: t.allowed, blocked: t.blocked, errors: t.errors, unreadable: t.unreadableLines },
      { allowed: 1, blocked: 4, errors: 1, unreadable: 1 },
    );
    assert.deepEqual(
      t.blockedByHost.map((g) => [g.host, g.count, g.paths.map((p) => `${p.path}×${p.count}`)]),
      [
        ['evil.example', 3, ['/a×2', '/b×1']],
        ['other.example', 1, ['/×1']],
      ],
    );
    const suggestion = renderSuggestion(
      suggestAllowlist(evidenceFromLog(log).requests, { domains: ['registry.npmjs.org'], url_prefixes: [] }),
    );
    const md = renderSummary({ ...facts, tally: t, suggestion });
    assert.match(md, /^## airlock: sandboxed run passed/);
    assert.match(md, new RegExp(`<code>${'b'.repeat(40)}</code>`));
    assert.match(md, new RegExp(`Enforced allowlist sha256 \\| <code>${'d'.repeat(64)}</code>`));
    assert.match(md, /1 allowed, 4 blocked, 1 upstream failures/);
    // One row per host, not per URL.
    assert.match(
      md,
      /\| <code>evil\.example<\/code> \| 3 \| <code>GET<\/code> \| <code>host_not_allowed<\/code> \| <code>\/a<\/code> ×2 <code>\/b<\/code> \|/,
    );
    assert.equal(md.split('\n').filter((l) => l.includes('<code>evil.example</code>')).length, 1);
    // The entries as a fenced YAML block that parses to an allowlist allowing exactly the blocked requests.
    const yaml = /```yaml\n([\s\S]*?)```/.exec(md)![1]!;
    const allowlist = AllowlistSchema.parse(parse(yaml));
    for (const [host, path] of [
      ['evil.example', '/a'],
      ['evil.example', '/b'],
      ['other.example', '/'],
    ] as const) {
      assert.ok(decide({ method: 'GET', host, target: path }, allowlist).allowed, `${host}${path}`);
    }
    assert.ok(
      !decide({ method: 'GET', host: 'registry.npmjs.org', target: '/x' }, allowlist).allowed,
      'already allowed',
    );
    assert.doesNotMatch(md, /differs/);
    // Every table's header row names its columns: an empty header renders as a blank bar.
    for (const header of md.split('\n').filter((line, i, all) => /^\|[-:|]+\|$/.test(all[i + 1] ?? ''))) {
      assert.ok(
        header
          .split('|')
          .slice(1, -1)
          .every((c) => c.trim() !== ''),
        `empty header cell in: ${header}`,
      );
    }
  });

  void it('audit mode: what would have been blocked, by host, and the suggested allowlist file', () => {
    const log = [
      line({
        event: 'request',
        decision: 'would_block',
        method: 'GET',
        host: 'npm.test',
        path: '/lodash',
        code: 'host_not_allowed',
      }),
      blocked('evil.test', '/', { code: 'connect_not_allowed', method: 'CONNECT' }),
      line({
        event: 'error',
        decision: 'error',
        method: 'GET',
        host: 'reg.test',
        path: '/',
        reason: 'bad certificate (SELF_SIGNED_CERT_IN_CHAIN)',
      }),
    ].join('\n');
    const md = renderSummary({
      ...facts,
      audit: true,
      tally: tallyNetworkLog(log),
      suggestion: 'url_prefixes:\n  - host: npm.test\n',
      suggestionFile: '/runner/temp/s.yaml',
    });
    assert.match(md, /^## airlock: sandboxed run passed \(audit mode\)/);
    assert.match(md, /0 allowed, 1 blocked, 1 would have been blocked, 1 upstream failures/);
    assert.match(md, /### Refused even in audit mode\n\n.*\n.*\n\| <code>evil\.test<\/code> \| 1 \|/);
    assert.match(md, /### Would have been blocked\n\n.*\n.*\n\| <code>npm\.test<\/code> \| 1 \|/);
    assert.match(
      md,
      /### Suggested allowlist\n\n.*`suggested-allowlist` output \(<code>\/runner\/temp\/s\.yaml<\/code>\)/,
    );
    assert.match(md, /### Upstream failures\n\n.*\n.*\n\| <code>reg\.test<\/code> \| 1 \| .* \| .*upstream_ca_file/);
  });

  void it('a path with backticks cannot close the YAML fence', () => {
    const block = fenced('yaml', 'a: "```` and ```"\n');
    assert.ok(block.startsWith('`````yaml\n'));
    assert.ok(block.endsWith('\n`````'));
  });

  void it('text chosen by the sandbox cannot break out of its table cell or inject markup', () => {
    const host = 'x.example|</code><img src=x onerror=alert(1)>`\n| forged | row |';
    const t = tallyNetworkLog(blocked(host, '/p|q'));
    const md = renderSummary({ ...facts, exitCode: 3, tally: t });
    const rows = md.split('\n').filter((l) => l.includes(' | 1 | '));
    assert.equal(rows.length, 1);
    const cells = rows[0]!.split(/(?<!\\)\|/).slice(1, -1);
    assert.equal(cells.length, 5, rows[0]);
    assert.doesNotMatch(md, /<img|<\/code><|\n\| forged/);
    assert.match(md, /failed \(exit 3\)/);
  });

  void it('says so when the proxy enforced a different allowlist than the policy the action loaded', () => {
    const t = tallyNetworkLog(line({ event: 'start', policy_sha256: 'e'.repeat(64) }));
    assert.match(
      renderSummary({ ...facts, tally: t }),
      /Proxy reported allowlist sha256 \| <code>e{64}<\/code> \(differs\)/,
    );
  });

  void it('with the network sandbox off, says that no allowlist was enforced', () => {
    const md = renderSummary({ ...facts, networkSandbox: false, tally: null });
    assert.match(md, /Network sandbox \| \*\*off\*\*/);
    assert.doesNotMatch(md, /Blocked requests/);
    assert.doesNotMatch(md, /```/);
  });
});

void describe('values registered with log masking', () => {
  void it('masked secrets, signing credentials and every !env value; not empty strings or plain config', () => {
    const sandbox = SandboxConfigSchema.parse({
      env: { REGION: 'eu-west-1', FROM_HOST: 'plain-but-from-env' },
      masked_secrets: {
        API_TOKEN: { value: 'tok-123456789', scopes: ['api.example.com'], headers: ['Authorization'] },
        EMPTY: { value: '', scopes: ['x'], headers: ['y'] },
      },
      signing_credentials: {
        aws: {
          type: 'aws-sigv4',
          access_key_id: 'AKIAREAL',
          secret_access_key: 'real/secret',
          session_token: 'sess',
          scopes: ['*.amazonaws.com'],
        },
      },
    });
    const policy = {
      configDir: null,
      layout: 'airlock',
      sandbox,
      envRefs: new Map([['env.FROM_HOST', 'HOST_VAR']]),
      allowlist: { domains: [], url_prefixes: [] },
      allowlistSha256: '0'.repeat(64),
      files: {},
      build: null,
      warnings: [],
    } satisfies LoadedPolicy;
    assert.deepEqual(
      new Set(secretValues(policy, { HOST_VAR: 'plain-but-from-env' })),
      new Set(['tok-123456789', 'AKIAREAL', 'real/secret', 'sess', 'plain-but-from-env']),
    );
  });
});
