/**
 * What `airlock run` says about the network when the command has finished: blocked requests by host, upstream
 * failures with what would fix them, and in audit mode what would have been blocked and where the suggested
 * allowlist is. Lines for stderr (the caller prefixes `airlock: `); sandbox-chosen text is escaped.
 */
import type { HostGroup, NetworkTally } from '../../protocol/network-log-records.js';

/** Hosts listed per kind; the rest are counted. */
const MAX_HOSTS = 5;

/** Text from the sandbox on one terminal line: no control characters (they could rewrite the terminal). */
function inert(s: string): string {
  return s.replace(/[^\x20-\x7e]/gu, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function hostLines(groups: readonly HostGroup[]): string[] {
  const lines = groups.slice(0, MAX_HOSTS).map((g) => {
    const paths = g.paths.map((p) => `${inert(p.path)}${p.count > 1 ? ` ×${p.count}` : ''}`).join(', ');
    const more = g.count > g.paths.reduce((n, p) => n + p.count, 0) ? ', …' : '';
    const methods = g.methods.map(inert).join('/');
    return `  ${inert(g.host)}: ${plural(g.count, 'request')} (${methods}) ${paths}${more}; ${g.codes.map(inert).join(', ')}`;
  });
  if (groups.length > MAX_HOSTS) lines.push(`  …and ${plural(groups.length - MAX_HOSTS, 'more host')}`);
  return lines;
}

export interface SummaryFacts {
  tally: NetworkTally;
  audit: boolean;
  /** The kept text network log, when there is one. */
  logPath?: string;
  /** Audit mode: where the suggested allowlist was written. */
  suggestionPath?: string;
}

export interface SummaryLines {
  warnings: string[];
  notices: string[];
}

export function runSummary(f: SummaryFacts): SummaryLines {
  const t = f.tally;
  const warnings: string[] = [];
  const notices: string[] = [];
  const where = f.logPath ? `; see ${f.logPath}` : '';
  if (t.blocked > 0) {
    const what = f.audit ? 'refused even in audit mode (safety refusals)' : 'blocked by the network allowlist';
    warnings.push(
      `${plural(t.blocked, 'request was', 'requests were')} ${what} (${t.allowed} allowed)${where}`,
      ...hostLines(t.blockedByHost),
    );
  }
  if (t.upstreamFailures.length > 0) {
    warnings.push(`${plural(t.errors, 'upstream failure')}: the proxy could not complete these requests${where}`);
    for (const g of t.upstreamFailures.slice(0, MAX_HOSTS)) {
      warnings.push(`  ${inert(g.host)}: ${g.count}× ${inert(g.reason)}${g.advice ? ` — fix: ${g.advice}` : ''}`);
    }
    if (t.upstreamFailures.length > MAX_HOSTS) {
      warnings.push(`  …and ${plural(t.upstreamFailures.length - MAX_HOSTS, 'more')}`);
    }
  }
  if (f.audit) {
    notices.push(
      `audit: ${plural(t.wouldBlock, 'request')} would have been blocked; suggested allowlist: ${f.suggestionPath ?? '(not written)'}`,
      ...hostLines(t.wouldBlockByHost),
    );
  }
  return { warnings, notices };
}
