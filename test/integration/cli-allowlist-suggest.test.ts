import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { AllowlistSchema } from '../../src/protocol/allowlist.js';
import { decide } from '../../src/protocol/policy.js';
import { CLI_ENTRY } from '../helpers/sandbox-fixture.js';

// `airlock allowlist suggest` as users run it: the built CLI, real files.

function airlock(args: string[], cwd: string) {
  const r = spawnSync(process.execPath, [CLI_ENTRY, ...args], {
    cwd,
    env: { PATH: process.env.PATH },
    encoding: 'utf8',
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function request(decision: string, code: string, method: string, host: string, p: string): string {
  return JSON.stringify({
    v: 1,
    ts: '2026-01-02T03:04:05.678Z',
    event: 'request',
    decision,
    code,
    method,
    host,
    path: p,
  });
}

let dir: string;
const observed: Array<[string, string, string]> = [
  ...['lodash', 'express', 'chalk'].flatMap((pkg): Array<[string, string, string]> => [
    ['GET', 'registry.test', `/${pkg}`],
    ['GET', 'registry.test', `/${pkg}/-/${pkg}-1.0.0.tgz`],
  ]),
  ...[1, 2, 3, 4].map((n): [string, string, string] => ['GET', 'api.test', `/repos/acme/app/issues/${n}`]),
  ['POST', 'api.test', '/repos/acme/app/issues'],
];

before(async () => {
  assert.ok(existsSync(CLI_ENTRY), `${CLI_ENTRY} is missing: run npm run build`);
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-suggest-'));
  const [first, second] = [observed.slice(0, 5), observed.slice(5)];
  await writeFile(
    path.join(dir, 'a.jsonl'),
    first.map(([m, h, p]) => request('would_block', 'host_not_allowed', m, h, p)).join('\n') + '\n',
  );
  await writeFile(
    path.join(dir, 'b.jsonl'),
    [
      ...second.map(([m, h, p]) => request('allowed', 'allowed', m, h, p)),
      request('blocked', 'connect_not_allowed', 'CONNECT', 'evil.test', '/'),
    ].join('\n') + '\n',
  );
});

void describe('airlock allowlist suggest (built package)', { timeout: 60_000 }, () => {
  it('prints a ready allowlist for every log given, and a one-line count on stderr', () => {
    const r = airlock(['allowlist', 'suggest', 'a.jsonl', 'b.jsonl'], dir);
    assert.equal(r.code, 0, r.stderr);
    const allowlist = AllowlistSchema.parse(parse(r.stdout));
    for (const [method, host, target] of observed) assert.ok(decide({ method, host, target }, allowlist).allowed);
    assert.ok(!decide({ method: 'GET', host: 'evil.test', target: '/' }, allowlist).allowed);
    assert.equal(allowlist.url_prefixes.length, 3, r.stdout);
    assert.match(r.stderr, /^airlock: 11 requests → 3 new entries; 1 refusal no entry can fix was left out\n$/);
    assert.equal(airlock(['allowlist', 'suggest', 'b.jsonl', 'a.jsonl'], dir).stdout, r.stdout, 'order of logs');
  });
  it('--output writes the file; --merge keeps an existing file and adds only what is missing', async () => {
    const existing =
      '# ours\nurl_prefixes:\n  - host: api.test  # the issues API\n    path: /repos/acme/app/issues/*\n    methods: [GET]\n';
    await writeFile(path.join(dir, 'existing.yaml'), existing);
    const r = airlock(
      ['allowlist', 'suggest', 'a.jsonl', 'b.jsonl', '--merge', 'existing.yaml', '--output', 'merged.yaml'],
      dir,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /11 requests → 2 new entries \(4 already allowed\).*wrote .*merged\.yaml/);
    const merged = await readFile(path.join(dir, 'merged.yaml'), 'utf8');
    assert.ok(merged.startsWith('# ours\nurl_prefixes:\n  - host: api.test # the issues API\n'), merged);
    const allowlist = AllowlistSchema.parse(parse(merged));
    for (const [method, host, target] of observed) assert.ok(decide({ method, host, target }, allowlist).allowed);
  });
  it('refuses to merge into an invalid allowlist (exit 125), and reports usage errors (exit 2)', async () => {
    await writeFile(path.join(dir, 'bad.yaml'), 'url_prefixes:\n  - {host: api.test, methods: [GTE]}\n');
    const bad = airlock(['allowlist', 'suggest', 'a.jsonl', '--merge', 'bad.yaml'], dir);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /bad\.yaml:2:\d+: url_prefixes\.0\.methods\.0: unknown HTTP method "GTE"/);
    assert.equal(airlock(['allowlist', 'suggest'], dir).code, 2);
    assert.equal(airlock(['allowlist', 'suggest', 'missing.jsonl'], dir).code, 2);
    assert.equal(airlock(['allowlist', 'frobnicate'], dir).code, 2);
  });
});
