/**
 * Reading JSONL network logs (docs/network-log.md) back: one JSON object per line. Every string in a record that came
 * from the sandbox is attacker-chosen, so readers take fields through `recordText` (strings only) and count lines
 * that are not objects instead of trusting them.
 */

export type LogRecord = Record<string, unknown>;

export function readLogRecords(jsonl: string): { records: LogRecord[]; unreadable: number } {
  const records: LogRecord[] = [];
  let unreadable = 0;
  for (const line of jsonl.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const parsed: unknown = JSON.parse(line);
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
      records.push(parsed as LogRecord);
    } catch {
      unreadable++;
    }
  }
  return { records, unreadable };
}

/** A string field, or '' when it is absent or not a string. */
export function recordText(record: LogRecord, key: string): string {
  const v = record[key];
  return typeof v === 'string' ? v : '';
}

/**
 * What to do about an upstream failure, from the reason the proxy logged, or null when there is nothing the policy can
 * change. The reasons are the proxy's own words (src/proxy/upstream/connector.ts `describeUpstreamError`, the router's
 * "cannot resolve"), never text from the sandbox.
 */
export function upstreamFailureAdvice(reason: string): string | null {
  if (
    /\b(SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(_LOCALLY)?)\b/.test(
      reason,
    )
  ) {
    return "the server's certificate is signed by a CA the proxy does not trust: add that CA (PEM) to upstream_ca_file in sandbox.yaml";
  }
  if (/ALTNAME/.test(reason)) {
    return 'the certificate does not name this host: fix the server, or the address upstream_hosts maps the name to';
  }
  if (/CERT_HAS_EXPIRED|CERT_NOT_YET_VALID/.test(reason)) return "the server's certificate is expired or not yet valid";
  if (/^connection refused/.test(reason)) {
    return 'nothing accepts connections there: is the service up, and do upstream_hosts map it to the right address and port?';
  }
  if (/^cannot resolve|has no addresses$/.test(reason)) {
    return "the proxy's resolvers do not know the name: map it in upstream_hosts or set upstream_dns in sandbox.yaml";
  }
  if (/^timed out|^upstream unreachable/.test(reason)) {
    return 'the proxy cannot reach it from the egress network (a firewall, or a host only reachable from elsewhere)';
  }
  return null;
}

/** Requests to one host, refused or audit-flagged: how many, and what they were. */
export interface HostGroup {
  host: string;
  count: number;
  methods: string[];
  codes: string[];
  /** The most frequent paths (without their query), with counts. */
  paths: Array<{ path: string; count: number }>;
}

export interface UpstreamFailureGroup {
  host: string;
  /** The first reason logged for this host and kind of failure. */
  reason: string;
  advice: string | null;
  count: number;
}

export interface NetworkTally {
  allowed: number;
  blocked: number;
  /** Audit mode: policy refusals let through. */
  wouldBlock: number;
  errors: number;
  unreadableLines: number;
  /** In first-seen order. */
  blockedByHost: HostGroup[];
  wouldBlockByHost: HostGroup[];
  upstreamFailures: UpstreamFailureGroup[];
  /** Provenance the proxy recorded in its `start` event, when it did. */
  loggedPolicySha256: string | null;
}

const PATHS_PER_HOST = 3;

function addToGroup(groups: Map<string, HostGroup & { all: Map<string, number> }>, record: LogRecord): void {
  const host = recordText(record, 'host') || '(no host)';
  let g = groups.get(host);
  if (!g) groups.set(host, (g = { host, count: 0, methods: [], codes: [], paths: [], all: new Map() }));
  g.count++;
  const method = recordText(record, 'method').toUpperCase() || '?';
  const code = recordText(record, 'code');
  if (!g.methods.includes(method)) g.methods.push(method);
  if (code && !g.codes.includes(code)) g.codes.push(code);
  const path = (recordText(record, 'path') || '/').split('?')[0]!;
  g.all.set(path, (g.all.get(path) ?? 0) + 1);
}

function finishGroups(groups: Map<string, HostGroup & { all: Map<string, number> }>): HostGroup[] {
  return [...groups.values()].map(({ all, ...g }) => ({
    ...g,
    paths: [...all.entries()]
      .sort(([a, ca], [b, cb]) => cb - ca || (a < b ? -1 : a > b ? 1 : 0))
      .slice(0, PATHS_PER_HOST)
      .map(([path, count]) => ({ path, count })),
  }));
}

export interface NetworkTallyBuilder {
  add(record: LogRecord): void;
  result(): NetworkTally;
}

/**
 * Counts and groups network-log records as they come: what the end-of-run summary and the Action's job summary show.
 * Memory grows with distinct hosts and paths, not with requests.
 */
export function createNetworkTally(): NetworkTallyBuilder {
  let allowed = 0;
  let blockedCount = 0;
  let wouldBlockCount = 0;
  let errors = 0;
  let loggedPolicySha256: string | null = null;
  const blocked = new Map<string, HostGroup & { all: Map<string, number> }>();
  const wouldBlock = new Map<string, HostGroup & { all: Map<string, number> }>();
  const failures = new Map<string, UpstreamFailureGroup>();
  return {
    add(record) {
      const event = recordText(record, 'event');
      if (event === 'start') {
        loggedPolicySha256 = recordText(record, 'policy_sha256') || loggedPolicySha256;
      } else if (event === 'error') {
        errors++;
        const host = recordText(record, 'host') || '(no host)';
        const reason = recordText(record, 'reason') || 'unknown error';
        const advice = upstreamFailureAdvice(reason);
        const key = JSON.stringify([host, advice ?? reason]);
        const known = failures.get(key);
        if (known) known.count++;
        else failures.set(key, { host, reason, advice, count: 1 });
      } else if (event === 'request') {
        const decision = recordText(record, 'decision');
        if (decision === 'allowed') allowed++;
        else if (decision === 'blocked') {
          blockedCount++;
          addToGroup(blocked, record);
        } else if (decision === 'would_block') {
          wouldBlockCount++;
          addToGroup(wouldBlock, record);
        }
      }
    },
    result: () => ({
      allowed,
      blocked: blockedCount,
      wouldBlock: wouldBlockCount,
      errors,
      unreadableLines: 0,
      blockedByHost: finishGroups(blocked),
      wouldBlockByHost: finishGroups(wouldBlock),
      upstreamFailures: [...failures.values()],
      loggedPolicySha256,
    }),
  };
}

/** The tally of a whole JSONL network log. */
export function tallyNetworkLog(jsonl: string): NetworkTally {
  const { records, unreadable } = readLogRecords(jsonl);
  const builder = createNetworkTally();
  for (const record of records) builder.add(record);
  return { ...builder.result(), unreadableLines: unreadable };
}
