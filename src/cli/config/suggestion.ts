/**
 * The file side of `airlock allowlist suggest`: which network-log records are evidence, and the suggestion as a
 * commented `network-allowlist.yaml` — new, or merged into an existing file with its entries and comments kept.
 */
import { isMap, isSeq, parseDocument, type Document, type YAMLMap, type YAMLSeq } from 'yaml';
import type { Allowlist } from '../../protocol/allowlist.js';
import { isDenyCode, refusalClass } from '../../protocol/deny-codes.js';
import { readLogRecords, recordText, type LogRecord } from '../../protocol/network-log-records.js';
import type { ObservedRequest, SuggestedEntry, Suggestion } from '../../protocol/allowlist-suggest.js';

export interface LogEvidence {
  requests: ObservedRequest[];
  /** Lines that were not JSON objects (a truncated or foreign file): counted, never trusted. */
  unreadable: number;
  /** Refusals no allowlist entry fixes (CONNECT, traversal, internal addresses, GraphQL filters…): left out. */
  skipped: number;
}

/**
 * Adds one network-log record to the evidence when an allowlist entry should allow it: allowed requests, audit mode's
 * `would_block` ones, and refusals for policy reasons. A GraphQL-filter refusal is left out: an unfiltered entry would
 * widen the filter, which is edited by hand (its hint says which field).
 */
export function addEvidence(record: LogRecord, into: LogEvidence): void {
  if (recordText(record, 'event') !== 'request') return;
  const decision = recordText(record, 'decision');
  const code = recordText(record, 'code');
  const evidence =
    decision === 'allowed' ||
    ((decision === 'would_block' || decision === 'blocked') &&
      isDenyCode(code) &&
      refusalClass(code) === 'policy' &&
      code !== 'graphql_operation_blocked');
  if (!evidence) {
    if (decision === 'blocked' || decision === 'would_block') into.skipped++;
    return;
  }
  const method = recordText(record, 'method');
  const host = recordText(record, 'host');
  const target = recordText(record, 'path');
  if (!/^[A-Za-z]+$/.test(method) || host === '' || !target.startsWith('/')) {
    into.skipped++;
    return;
  }
  // The port the request went to (absent in logs from before ports were judged: the scheme's default then).
  const port = record['port'];
  const scheme = recordText(record, 'url').startsWith('http://') ? 'http' : 'https';
  into.requests.push({
    method,
    host,
    target,
    scheme,
    ...(typeof port === 'number' && Number.isInteger(port) ? { port } : {}),
  });
}

export function emptyEvidence(): LogEvidence {
  return { requests: [], unreadable: 0, skipped: 0 };
}

/** The evidence in a JSONL network log (docs/network-log.md). */
export function evidenceFromLog(jsonl: string, into: LogEvidence = emptyEvidence()): LogEvidence {
  const { records, unreadable } = readLogRecords(jsonl);
  into.unreadable += unreadable;
  for (const record of records) addEvidence(record, into);
  return into;
}

const HEADER =
  ' Suggested by `airlock allowlist suggest` from what a workload did (docs/audit.md). Review every entry before\n' +
  ' committing it on the base branch: each allows the requests its comment counts, and little else.';

/** The comment above an entry: how many requests it allows and the most frequent of them. */
export function entryComment(e: SuggestedEntry): string {
  const more = e.moreExamples ? ', …' : '';
  return ` ${e.requests} request${e.requests === 1 ? '' : 's'}: ${e.examples.join(', ')}${more}`;
}

function sequenceAt(doc: Document, key: string): YAMLSeq {
  const existing = doc.get(key, true);
  if (isSeq(existing)) {
    // A flow sequence (`domains: [a, b]`) stays flow unless entries with comments are added to it.
    return existing;
  }
  const seq = doc.createNode([]);
  seq.flow = false;
  if (isMap(doc.contents)) doc.contents.set(key, seq);
  else doc.contents = doc.createNode({ [key]: seq });
  return seq;
}

/**
 * The suggestion as YAML. Without `existing`, a complete new file; with it, that file's text with the suggested
 * entries appended (its own entries, order and comments untouched). Deterministic: the same suggestion and file give
 * the same bytes.
 */
export function renderSuggestion(suggestion: Suggestion, existing?: string): string {
  const doc = existing === undefined ? parseDocument('url_prefixes: []\n') : parseDocument(existing);
  if (existing === undefined) doc.commentBefore = HEADER;
  const domains = suggestion.entries.filter((e) => e.kind === 'domain');
  const prefixes = suggestion.entries.filter((e) => e.kind === 'url_prefix');
  if (domains.length > 0) {
    const seq = sequenceAt(doc, 'domains');
    seq.flow = false;
    for (const e of domains) {
      const node = doc.createNode(e.host);
      node.commentBefore = `${entryComment(e)} (methods ${e.methods.join(', ')} on many paths)`;
      seq.items.push(node);
    }
  }
  const seq = sequenceAt(doc, 'url_prefixes');
  if (prefixes.length > 0) seq.flow = false;
  for (const e of prefixes) {
    if (e.kind !== 'url_prefix') continue;
    const node = doc.createNode({ host: e.host, path: e.path, methods: e.methods }) as YAMLMap;
    const methods = node.get('methods', true);
    if (isSeq(methods)) methods.flow = true;
    node.commentBefore = entryComment(e);
    seq.items.push(node);
  }
  return doc.toString({ lineWidth: 0, flowCollectionPadding: false });
}

/** An empty allowlist: what a suggestion is merged into when there is nothing to merge with. */
export const NO_ALLOWLIST: Allowlist = { domains: [], url_prefixes: [] };
