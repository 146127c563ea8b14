import type { Allowlist } from './allowlist.js';
import { hostMatches, methodMatches, normalizeHost, percentDecode, splitTarget } from './policy.js';

/**
 * Anthropic's server-side tools (web fetch, web search, code execution…) reach the internet from Anthropic's side,
 * not through the proxy: a sandbox allowed to call `api.anthropic.com` could ask the model to fetch
 * `https://attacker.example/?data=…` for it. So, as Airut does (airut-behaviour.md §4g), every such tool in a
 * Messages API request gets its `allowed_domains` cut down to hosts the allowlist opens for GET, and configurations
 * that cannot be cut down safely are refused. Pure: the proxy hands it the decoded body.
 */

export const TOOL_DOMAINS_HOST = 'api.anthropic.com';

/** Largest Messages request the filter reads (images and documents travel inline, so this is generous). */
export const TOOL_DOMAINS_MAX_BODY_BYTES = 32 * 1024 * 1024;

/** Anthropic-defined tool types that act on the network from Anthropic's side (matched case-insensitively). */
const NETWORK_TOOL_PREFIXES = ['web_fetch_', 'web_search_', 'computer_', 'bash_', 'code_execution_'];

export type ToolDomainsVerdict =
  | { kind: 'pass' }
  /** The body to send instead; `annotation` says what was dropped or forced, null when no tool changed. */
  | { kind: 'rewrite'; body: string; annotation: string | null }
  | {
      kind: 'block';
      code:
        | 'tool_config_too_large'
        | 'tool_config_invalid'
        | 'blocklist_tool_config_unsupported'
        | 'wildcard_tool_domain_unsupported';
      reason: string;
    };

/**
 * Whether a request goes to the Messages API. The path is percent-decoded, and empty and `.` segments are
 * dropped before comparing (case-insensitively), so `/v1//Messages` or `/v1/./%6dessages` cannot slip past a
 * server that normalises them. Airut compares the decoded path as written.
 */
export function isMessagesRequest(host: string, target: string): boolean {
  if (host !== TOOL_DOMAINS_HOST) return false;
  const { path } = splitTarget(target);
  const segments = percentDecode(path)
    .toLowerCase()
    .split('/')
    .filter((s) => s !== '' && s !== '.');
  return segments[0] === 'v1' && segments[1] === 'messages';
}

/** A host the allowlist opens for GET on every path: a `domains` entry, or a `url_prefixes` entry without path. */
function openForGet(host: string, allowlist: Allowlist): boolean {
  if (allowlist.domains.some((p) => hostMatches(host, p))) return true;
  return allowlist.url_prefixes.some(
    (e) => e.path === '' && methodMatches('GET', e.methods) && hostMatches(host, e.host),
  );
}

/** A plain host name: no pattern, no leading dot, no whitespace. */
function isBareDomain(value: unknown): value is string {
  return typeof value === 'string' && value !== '' && !/[*?\s]/.test(value) && !value.startsWith('.');
}

/** Every array under a `tools` key anywhere in the document, found without recursion (no stack to exhaust). */
function toolLists(document: unknown): unknown[][] {
  const lists: unknown[][] = [];
  const stack: unknown[] = [document];
  while (stack.length > 0) {
    const node = stack.pop();
    if (Array.isArray(node)) {
      // A loop, not push(...node): spreading a large array overflows the argument limit.
      for (const item of node as unknown[]) stack.push(item);
    } else if (node !== null && typeof node === 'object') {
      for (const [key, value] of Object.entries(node)) {
        if (key === 'tools' && Array.isArray(value)) lists.push(value);
        stack.push(value);
      }
    }
  }
  return lists;
}

/** The verdict for a body over TOOL_DOMAINS_MAX_BODY_BYTES, also when the proxy stopped reading it at the bound. */
export const TOOLS_TOO_LARGE: ToolDomainsVerdict = {
  kind: 'block',
  code: 'tool_config_too_large',
  reason: `the Messages request is over ${TOOL_DOMAINS_MAX_BODY_BYTES} bytes; its tools cannot be checked`,
};

/** Judges (and, when needed, rewrites) one Messages API request body, already decoded from any Content-Encoding. */
export function trimToolDomains(body: Buffer | string, allowlist: Allowlist): ToolDomainsVerdict {
  const size = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
  if (size > TOOL_DOMAINS_MAX_BODY_BYTES) return TOOLS_TOO_LARGE;
  let text: string;
  try {
    text = typeof body === 'string' ? body : new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    return { kind: 'block', code: 'tool_config_invalid', reason: 'the Messages request body is not valid UTF-8' };
  }
  // No body (GET /v1/messages/batches/…): nothing can configure a tool. Airut refuses these as invalid JSON.
  if (text.trim() === '') return { kind: 'pass' };
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    return { kind: 'block', code: 'tool_config_invalid', reason: 'the Messages request body is not valid JSON' };
  }
  // What the filter did, for the log: `web_fetch_20250910 dropped 2 of 3 (evil.example, …)`, `bash_20250124 forced []`.
  const notes: string[] = [];
  for (const list of toolLists(document)) {
    for (const tool of list) {
      if (tool === null || typeof tool !== 'object' || Array.isArray(tool)) continue;
      const t = tool as Record<string, unknown>;
      const type = typeof t.type === 'string' ? t.type.toLowerCase() : '';
      if (!NETWORK_TOOL_PREFIXES.some((p) => type.startsWith(p))) continue;
      const blocked = t.blocked_domains;
      if (blocked !== undefined && blocked !== null && !(Array.isArray(blocked) && blocked.length === 0)) {
        return {
          kind: 'block',
          code: 'blocklist_tool_config_unsupported',
          reason: `tool ${String(t.type)} uses blocked_domains; list allowed_domains instead (a blocklist cannot be narrowed to the allowlist)`,
        };
      }
      if (t.allowed_domains === undefined || t.allowed_domains === null) {
        // Without a list the tool could reach any host. Web search rejects an empty list, so its key goes instead.
        if (type.startsWith('web_search_')) {
          delete t.allowed_domains;
        } else {
          t.allowed_domains = [];
          notes.push(`${String(t.type)} forced []`);
        }
        continue;
      }
      const requested: unknown[] = Array.isArray(t.allowed_domains)
        ? (t.allowed_domains as unknown[])
        : [t.allowed_domains];
      const notBare = requested.find((d) => !isBareDomain(d));
      if (notBare !== undefined) {
        return {
          kind: 'block',
          code: 'wildcard_tool_domain_unsupported',
          reason: `tool ${String(t.type)} allows ${JSON.stringify(notBare)}: only plain host names can be checked against the allowlist`,
        };
      }
      const keep = (requested as string[]).filter((d) => {
        const host = normalizeHost(d);
        return host !== null && openForGet(host, allowlist);
      });
      const dropped = (requested as string[]).filter((d) => !keep.includes(d));
      if (dropped.length > 0) {
        const names = dropped.slice(0, 5).map((d) => d.slice(0, 100));
        const more = dropped.length > names.length ? ', …' : '';
        notes.push(`${String(t.type)} dropped ${dropped.length} of ${requested.length} (${names.join(', ')}${more})`);
      }
      t.allowed_domains = keep;
    }
  }
  if (document === null || typeof document !== 'object') return { kind: 'pass' };
  // Re-serialised even when nothing changed: the upstream then parses exactly the document judged here, so a
  // duplicate key or another parser quirk cannot show it tools this filter did not see.
  return {
    kind: 'rewrite',
    body: JSON.stringify(document),
    annotation: notes.length > 0 ? `tool-domains: ${notes.join('; ')}`.slice(0, 500) : null,
  };
}
