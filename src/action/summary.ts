import { readLogRecords, recordText } from '../protocol/network-log-records.js';
import { hintFor } from '../protocol/policy.js';

/**
 * The job summary and annotations, from the JSONL network log (docs/network-log.md). Every string in the log that
 * came from the sandbox (host, path, method) is attacker-chosen, so it is escaped for Markdown/HTML before it reaches
 * the summary, and records that do not parse are counted, not trusted.
 */

export interface BlockedRequest {
  method: string;
  host: string;
  path: string;
  code: string;
  /** The allowlist entry that would permit it. */
  hint: string;
  count: number;
}

export interface NetworkTally {
  allowed: number;
  blocked: number;
  errors: number;
  unreadableLines: number;
  blockedRequests: BlockedRequest[];
  /** Distinct blocked hosts, in first-seen order: one warning annotation each. */
  blockedHosts: string[];
  /** Provenance the proxy recorded in its `start` event, when it did. */
  loggedPolicySha256: string | null;
}

export function tallyNetworkLog(jsonl: string): NetworkTally {
  const tally: NetworkTally = {
    allowed: 0,
    blocked: 0,
    errors: 0,
    unreadableLines: 0,
    blockedRequests: [],
    blockedHosts: [],
    loggedPolicySha256: null,
  };
  const byKey = new Map<string, BlockedRequest>();
  const { records, unreadable } = readLogRecords(jsonl);
  tally.unreadableLines = unreadable;
  for (const record of records) {
    const event = recordText(record, 'event');
    if (event === 'start') {
      tally.loggedPolicySha256 = recordText(record, 'policy_sha256') || tally.loggedPolicySha256;
    } else if (event === 'error') {
      tally.errors++;
    } else if (event === 'request') {
      const decision = recordText(record, 'decision');
      if (decision === 'allowed') tally.allowed++;
      else if (decision === 'blocked') {
        tally.blocked++;
        const method = recordText(record, 'method').toUpperCase() || '?';
        const host = recordText(record, 'host');
        const path = recordText(record, 'path') || '/';
        const code = recordText(record, 'code');
        const key = JSON.stringify([method, host, path, code]);
        const known = byKey.get(key);
        if (known) known.count++;
        else {
          const entry = {
            method,
            host,
            path,
            code,
            hint: recordText(record, 'hint') || hintFor(method, host, path),
            count: 1,
          };
          byKey.set(key, entry);
          tally.blockedRequests.push(entry);
        }
        if (host !== '' && !tally.blockedHosts.includes(host)) tally.blockedHosts.push(host);
      }
    }
  }
  return tally;
}

/** Text that came from the sandbox, made inert inside a Markdown table cell. */
export function cell(text: string, max = 200): string {
  const clipped = text.length > max ? `${text.slice(0, max)}…` : text;
  const escaped = clipped
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/\|/g, '&#124;')
    .replace(/`/g, '&#96;')

    .replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return `<code>${escaped}</code>`;
}

export interface RunFacts {
  exitCode: number;
  baseRef: string;
  baseSha: string;
  prSha: string;
  mode: 'merge' | 'checkout';
  allowlistSha256: string;
  networkSandbox: boolean;
  /** Null when the run produced no log (network sandbox off, or airlock failed before the proxy started). */
  tally: NetworkTally | null;
  /** Blocked rows shown in the table; the rest are counted. */
  maxRows?: number;
}

export function renderSummary(f: RunFacts): string {
  const lines: string[] = [];
  const verdict = f.exitCode === 0 ? 'passed' : `failed (exit ${f.exitCode})`;
  lines.push(`## airlock: sandboxed run ${verdict}`, '');
  // A Markdown table needs a header row; an empty one renders as a blank bar above the facts.
  lines.push('| Run | Details |', '|---|---|');
  lines.push(`| Base branch (policy source) | ${cell(f.baseRef)} at ${cell(f.baseSha)} |`);
  lines.push(
    `| PR commit (${f.mode === 'merge' ? 'merged in the sandbox' : 'checked out in the sandbox'}) | ${cell(f.prSha)} |`,
  );
  lines.push(`| Enforced allowlist sha256 | ${cell(f.allowlistSha256)} |`);
  if (!f.networkSandbox) {
    lines.push(
      '| Network sandbox | **off** (`network_sandbox: false` in the base policy): no allowlist was enforced |',
    );
  }
  const t = f.tally;
  if (t) {
    lines.push(`| Requests | ${t.allowed} allowed, ${t.blocked} blocked, ${t.errors} upstream errors |`);
    if (t.unreadableLines > 0) lines.push(`| Unreadable log lines | ${t.unreadableLines} |`);
    if (t.loggedPolicySha256 && t.loggedPolicySha256 !== f.allowlistSha256) {
      lines.push(`| ⚠ Proxy reported allowlist sha256 | ${cell(t.loggedPolicySha256)} (differs) |`);
    }
  }
  lines.push(`| Command exit code | ${f.exitCode} |`, '');
  if (t && t.blockedRequests.length > 0) {
    const max = f.maxRows ?? 50;
    lines.push('### Blocked requests', '');
    lines.push('| Count | Method | Host | Path | Code | Allowlist entry that would permit it |');
    lines.push('|---:|---|---|---|---|---|');
    for (const b of t.blockedRequests.slice(0, max)) {
      lines.push(
        `| ${b.count} | ${cell(b.method, 16)} | ${cell(b.host)} | ${cell(b.path)} | ${cell(b.code, 40)} | ${cell(b.hint, 400)} |`,
      );
    }
    if (t.blockedRequests.length > max) {
      lines.push(
        '',
        `…and ${t.blockedRequests.length - max} more distinct blocked requests (see the network-log-json output).`,
      );
    }
    lines.push(
      '',
      'Add an entry to `.airlock/network-allowlist.yaml` **on the base branch** to allow a request; a PR cannot change the policy it runs under.',
    );
  }
  return `${lines.join('\n')}\n`;
}
