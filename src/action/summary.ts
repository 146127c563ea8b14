import type { HostGroup, NetworkTally } from '../protocol/network-log-records.js';

/**
 * The job summary and annotations, from the JSONL network log (docs/network-log.md) tallied by the same code as the
 * CLI's end-of-run summary. Every string in the log that came from the sandbox (host, path, method) is attacker-chosen,
 * so it is escaped for Markdown/HTML before it reaches the summary, and records that do not parse are counted, not
 * trusted. YAML blocks are fenced with more backticks than any run inside them, so no path can close the fence.
 */

export type { NetworkTally } from '../protocol/network-log-records.js';

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

/** A fenced code block that its content cannot close: the fence is longer than any backtick run in it. */
export function fenced(lang: string, content: string): string {
  const longest = Math.max(0, ...[...content.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = '`'.repeat(Math.max(3, longest + 1));
  return `${fence}${lang}\n${content.replace(/\n?$/, '\n')}${fence}`;
}

export interface RunFacts {
  exitCode: number;
  baseRef: string;
  baseSha: string;
  prSha: string;
  mode: 'merge' | 'checkout';
  allowlistSha256: string;
  networkSandbox: boolean;
  /** Audit mode: policy refusals were let through and logged as would_block. */
  audit: boolean;
  /** Null when the run produced no log (network sandbox off, or airlock failed before the proxy started). */
  tally: NetworkTally | null;
  /** Allowlist entries (YAML) that would allow what the policy refused or flagged; null when there is nothing. */
  suggestion: string | null;
  /** Where the complete suggested allowlist was written (the `suggested-allowlist` output). */
  suggestionFile?: string;
  /** Host rows shown per table; the rest are counted. */
  maxRows?: number;
}

function hostTable(groups: readonly HostGroup[], max: number): string[] {
  const lines = ['| Host | Requests | Methods | Codes | Most frequent paths |', '|---|---:|---|---|---|'];
  for (const g of groups.slice(0, max)) {
    const paths = g.paths.map((p) => `${cell(p.path)}${p.count > 1 ? ` ×${p.count}` : ''}`).join(' ');
    lines.push(
      `| ${cell(g.host)} | ${g.count} | ${cell(g.methods.join(', '), 80)} | ${cell(g.codes.join(', '), 120)} | ${paths} |`,
    );
  }
  if (groups.length > max) lines.push('', `…and ${groups.length - max} more hosts (see the network-log-json output).`);
  return lines;
}

export function renderSummary(f: RunFacts): string {
  const lines: string[] = [];
  const verdict = f.exitCode === 0 ? 'passed' : `failed (exit ${f.exitCode})`;
  lines.push(`## airlock: sandboxed run ${verdict}${f.audit ? ' (audit mode)' : ''}`, '');
  // A Markdown table needs a header row; an empty one renders as a blank bar above the facts.
  lines.push('| Run | Details |', '|---|---|');
  lines.push(`| Base branch (policy source) | ${cell(f.baseRef)} at ${cell(f.baseSha)} |`);
  lines.push(
    `| PR commit (${f.mode === 'merge' ? 'merged in the sandbox' : 'checked out in the sandbox'}) | ${cell(f.prSha)} |`,
  );
  lines.push(`| ${f.audit ? 'Audited' : 'Enforced'} allowlist sha256 | ${cell(f.allowlistSha256)} |`);
  if (!f.networkSandbox) {
    lines.push(
      '| Network sandbox | **off** (`network_sandbox: false` in the base policy): no allowlist was enforced |',
    );
  }
  if (f.audit && f.networkSandbox) {
    lines.push(
      '| Mode | **audit**: requests the allowlist refuses were let through and logged; safety refusals still applied |',
    );
  }
  const t = f.tally;
  if (t) {
    const audited = f.audit ? `, ${t.wouldBlock} would have been blocked` : '';
    lines.push(`| Requests | ${t.allowed} allowed, ${t.blocked} blocked${audited}, ${t.errors} upstream failures |`);
    if (t.unreadableLines > 0) lines.push(`| Unreadable log lines | ${t.unreadableLines} |`);
    if (t.loggedPolicySha256 && t.loggedPolicySha256 !== f.allowlistSha256) {
      lines.push(`| ⚠ Proxy reported allowlist sha256 | ${cell(t.loggedPolicySha256)} (differs) |`);
    }
  }
  lines.push(`| Command exit code | ${f.exitCode} |`, '');
  const max = f.maxRows ?? 30;
  if (t && t.blockedByHost.length > 0) {
    lines.push(
      f.audit ? '### Refused even in audit mode' : '### Blocked requests',
      '',
      ...hostTable(t.blockedByHost, max),
      '',
    );
  }
  if (t && t.wouldBlockByHost.length > 0) {
    lines.push('### Would have been blocked', '', ...hostTable(t.wouldBlockByHost, max), '');
  }
  if (f.suggestion !== null) {
    lines.push(
      f.audit ? '### Suggested allowlist' : '### Entries that would allow them',
      '',
      `Review, then add to \`.airlock/network-allowlist.yaml\` **on the base branch** (a PR cannot change the policy it runs under)${f.suggestionFile ? `; the complete file is the \`suggested-allowlist\` output (${cell(f.suggestionFile)})` : ''}:`,
      '',
      fenced('yaml', f.suggestion),
      '',
    );
  }
  if (t && t.upstreamFailures.length > 0) {
    lines.push('### Upstream failures', '', '| Host | Failures | Reason | Fix |', '|---|---:|---|---|');
    for (const g of t.upstreamFailures.slice(0, max)) {
      lines.push(`| ${cell(g.host)} | ${g.count} | ${cell(g.reason)} | ${g.advice ? escapeMarkdown(g.advice) : ''} |`);
    }
    lines.push('');
  }
  return `${lines.join('\n')}\n`;
}

/** airlock's own prose in a table cell: only the pipe needs care. */
function escapeMarkdown(text: string): string {
  return text.replace(/\|/g, '&#124;');
}
