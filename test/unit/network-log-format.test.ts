import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  fanOut,
  formatJsonLine,
  formatTextLine,
  lineLog,
  memoryLog,
  type NetworkEvent,
} from '../../src/proxy/log/network-log.js';

/** Airut's text lines (airut-behaviour.md §4) and the versioned JSONL records, from the same events. */

const ts = new Date('2026-01-02T03:04:05.678Z');

const request: NetworkEvent = {
  event: 'request',
  ts,
  decision: 'allowed',
  method: 'GET',
  url: 'https://api.github.com/repos/x?per_page=1',
  host: 'api.github.com',
  port: 443,
  path: '/repos/x?per_page=1',
  status: 200,
  code: 'allowed',
  rule: 'domains[0] api.github.com',
  bytesIn: 0,
  bytesOut: 1234,
  durationMs: 12.5,
  annotations: ['masked: 1', 'region: us-east-1'],
};

void test('text lines match Airut’s shapes', () => {
  assert.equal(formatTextLine({ event: 'start', ts }), '=== TASK START 2026-01-02T03:04:05Z ===');
  assert.equal(
    formatTextLine({ event: 'dns', ts, transport: 'udp', type: 'A', name: 'github.com', answer: '10.199.1.100' }),
    'DNS A github.com -> 10.199.1.100',
  );
  assert.equal(
    formatTextLine({ event: 'dns', ts, transport: 'udp', type: 'AAAA', name: 'github.com', answer: null }),
    'DNS AAAA github.com -> NOERROR (no records)',
  );
  assert.equal(
    formatTextLine(request),
    'ALLOWED GET https://api.github.com/repos/x?per_page=1 -> 200 [masked: 1] [region: us-east-1]',
  );
  assert.equal(
    formatTextLine({ ...request, decision: 'blocked', status: 403, code: 'host_not_allowed', annotations: [] }),
    'BLOCKED GET https://api.github.com/repos/x?per_page=1 -> 403 (host_not_allowed)',
  );
  assert.equal(
    formatTextLine({
      event: 'error',
      ts,
      method: 'GET',
      url: 'https://a/x',
      host: 'a',
      path: '/x',
      reason: 'connection refused',
      durationMs: 1,
    }),
    'ERROR GET https://a/x -> connection refused',
  );
  assert.equal(
    formatTextLine({
      event: 'credential',
      ts,
      line: "STRIPPED header 'authorization' from GET https://a/ (foreign credential blocked)",
    }),
    "STRIPPED header 'authorization' from GET https://a/ (foreign credential blocked)",
  );
  assert.equal(
    formatTextLine({ event: 'tls', ts, servername: null, code: 'host_mismatch', reason: 'no SNI' }),
    'BLOCKED TLS (no SNI) -> handshake refused (host_mismatch)',
  );
});

void test('a name or path cannot forge a second line', () => {
  const evil = formatTextLine({ ...request, url: 'https://a/x\r\nALLOWED GET https://evil/ -> 200' });
  assert.equal(evil.split('\n').length, 1);
  assert.ok(evil.includes('\\x0d\\x0a'));
  const dns = formatTextLine({ event: 'dns', ts, transport: 'udp', type: 'A', name: 'a\nb', answer: '1.2.3.4' });
  assert.equal(dns, 'DNS A a\\x0ab -> 1.2.3.4');
});

void test('JSONL records: version first, snake_case, every field', () => {
  const record = JSON.parse(formatJsonLine(request)) as Record<string, unknown>;
  assert.deepEqual(Object.keys(record).slice(0, 3), ['v', 'ts', 'event']);
  assert.deepEqual(record, {
    v: 1,
    ts: '2026-01-02T03:04:05.678Z',
    event: 'request',
    decision: 'allowed',
    method: 'GET',
    url: 'https://api.github.com/repos/x?per_page=1',
    host: 'api.github.com',
    port: 443,
    path: '/repos/x?per_page=1',
    status: 200,
    code: 'allowed',
    rule: 'domains[0] api.github.com',
    reason: null,
    hint: null,
    bytes_in: 0,
    bytes_out: 1234,
    duration_ms: 12.5,
    annotations: ['masked: 1', 'region: us-east-1'],
  });
  const line = formatJsonLine({ ...request, url: 'https://a/\n' });
  assert.equal(line.split('\n').length, 1);
  const start = JSON.parse(formatJsonLine({ event: 'start', ts, runId: 'r1', policySha256: 'ab' })) as Record<
    string,
    unknown
  >;
  assert.equal(start.run_id, 'r1');
});

void test('a refusal carries its YAML hint and deciding rule; audit mode writes WOULD_BLOCK with the deny code', () => {
  const blocked = {
    ...request,
    decision: 'blocked' as const,
    status: 403,
    code: 'method_not_allowed',
    rule: 'url_prefixes[0] api.github.com /repos/* methods=GET',
    reason: 'method POST is not allowed',
    hint: '- {host: "api.github.com", path: "/repos/x[?]*", methods: [POST]}',
  };
  const record = JSON.parse(formatJsonLine(blocked)) as Record<string, unknown>;
  assert.equal(record.hint, blocked.hint);
  assert.equal(record.rule, blocked.rule);
  const audited = { ...request, decision: 'would_block' as const, code: 'host_not_allowed', rule: undefined };
  assert.equal(
    formatTextLine(audited),
    'WOULD_BLOCK GET https://api.github.com/repos/x?per_page=1 -> 200 (host_not_allowed) [masked: 1] [region: us-east-1]',
  );
  assert.equal((JSON.parse(formatJsonLine(audited)) as { decision: string }).decision, 'would_block');
});

void test('lineLog writes both renderings; fanOut and memoryLog see the same events', () => {
  const text: string[] = [];
  const json: string[] = [];
  const memory = memoryLog();
  const log = fanOut(lineLog({ text: { write: (s) => text.push(s) }, json: { write: (s) => json.push(s) } }), memory);
  log.write({ event: 'start', ts });
  log.write(request);
  assert.equal(text.length, 2);
  assert.ok(text.every((l) => l.endsWith('\n')));
  assert.equal(json.length, 2);
  assert.equal(memory.events.length, 2);
});
