import { splitHostPattern, type Allowlist, type UrlPrefixRule } from './allowlist.js';
import type { DenyCode } from './deny-codes.js';
import { escapeGlob, fnmatchCase, fnmatchIgnoreCase, literalPattern } from './fnmatch.js';

/**
 * The allowlist decision, shared by the proxy (enforcement) and `airlock policy check` (debugging), so what a user
 * tests is exactly what is enforced. Pure: no I/O.
 */

export type Scheme = 'http' | 'https';

/** The port a URL, a Host header or an allowlist entry means when it names none. */
export const DEFAULT_PORTS: Readonly<Record<Scheme, number>> = { http: 80, https: 443 };

export interface PolicyRequest {
  method: string;
  /** Host as sent (Host header or SNI); may carry a port, a trailing dot, mixed case, or be an IP literal. */
  host: string;
  /** Request target in origin form: path plus optional `?query`, raw as on the wire. */
  target: string;
  /** Default `https`. */
  scheme?: Scheme;
  /**
   * The port the request goes to. The proxy passes the port of the listener the sandbox connected to (it has
   * already refused a Host naming another); without it, the port written in `host`, else the scheme's default.
   */
  port?: number;
}

export type MatchedRule =
  { kind: 'domain'; index: number; pattern: string } | { kind: 'url_prefix'; index: number; entry: UrlPrefixRule };

export type Decision =
  | { allowed: true; code: 'allowed'; rule: MatchedRule; host: string; path: string; reason: string }
  | {
      allowed: false;
      code: DenyCode;
      host: string;
      path: string;
      reason: string;
      /** The allowlist entry that would permit the request: YAML, ready to paste under `url_prefixes:`. */
      hint?: string;
      /** The entry that matched host and path but refused the method (`method_not_allowed`). */
      rule?: MatchedRule;
      /** What to do instead, in words, when no allowlist entry helps. */
      fix?: string;
    };

const DNS_LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/** Lower-cased host without port and trailing dot, or null when it is not a DNS name or IP literal. */
export function normalizeHost(raw: string): string | null {
  let host = raw.trim();
  // Checked before lower-casing: U+212A (Kelvin sign) lower-cases to an ASCII "k".
  if (!/^[\x21-\x7e]*$/.test(host)) return null;
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    if (end < 0) return null;
    const rest = host.slice(end + 1);
    if (rest !== '' && !/^:\d{1,5}$/.test(rest)) return null;
    const inner = host.slice(1, end).toLowerCase();
    return isIPv6(inner) ? inner : null;
  }
  if (isIPv6(host.toLowerCase())) return host.toLowerCase();
  const colon = host.lastIndexOf(':');
  if (colon >= 0) {
    if (!/^\d{1,5}$/.test(host.slice(colon + 1))) return null;
    host = host.slice(0, colon);
  }
  if (host.endsWith('.')) host = host.slice(0, -1);
  host = host.toLowerCase();
  if (host.length === 0 || host.length > 253) return null;
  if (/^[0-9.]+$/.test(host)) return isIPv4(host) ? host : null;
  return host.split('.').every((label) => DNS_LABEL.test(label)) ? host : null;
}

/** The port an authority (`host`, `host:port`, `[v6]:port`) names explicitly: a number (maybe out of range), or null. */
export function explicitPort(authority: string): number | null {
  const a = authority.trim();
  const m = a.startsWith('[') ? /\]:(\d{1,5})$/.exec(a) : isIPv6(a) ? null : /:(\d{1,5})$/.exec(a);
  return m ? Number(m[1]) : null;
}

/** An authority as the proxy writes it: normalised host (IPv6 in brackets), the port only when not the default. */
export function formatAuthority(host: string, port: number, scheme: Scheme): string {
  const name = isIPv6(host) ? `[${host}]` : host;
  return port === DEFAULT_PORTS[scheme] ? name : `${name}:${port}`;
}

/**
 * Whether a request for `host` on `port` is inside a host pattern: the host matches and the port is the one the
 * pattern names — or, for a pattern without a port, the scheme's default (443 on TLS, 80 in clear).
 */
export function endpointMatches(host: string, port: number, scheme: Scheme, pattern: string): boolean {
  const split = splitHostPattern(pattern);
  return (split.port ?? DEFAULT_PORTS[scheme]) === port && hostMatches(host, split.host);
}

/** Every port the allowlist names beyond the default ones: the proxy listens on each (TLS and plain on one port). */
export function declaredPorts(allowlist: Allowlist): number[] {
  const ports = new Set<number>();
  for (const pattern of [...allowlist.domains, ...allowlist.url_prefixes.map((e) => e.host)]) {
    const { port } = splitHostPattern(pattern);
    if (port !== null && !RESERVED_PORTS.has(port)) ports.add(port);
  }
  return [...ports].sort((a, b) => a - b);
}

/** Ports the proxy already serves: 80 and 443 as the defaults, 53 for DNS (no HTTP there, ever). */
const RESERVED_PORTS = new Set([53, 80, 443]);

export function isIPv4(s: string): boolean {
  const parts = s.split('.');
  return parts.length === 4 && parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255);
}

export function isIPv6(s: string): boolean {
  if (!s.includes(':') || !/^[0-9a-f:.]+$/i.test(s)) return false;
  const dbl = s.split('::');
  if (dbl.length > 2) return false;
  const groups = (part: string): string[] | null => {
    if (part === '') return [];
    const g = part.split(':');
    const last = g[g.length - 1]!;
    const out: string[] = [];
    for (const [i, x] of g.entries()) {
      if (i === g.length - 1 && last.includes('.')) {
        if (!isIPv4(last)) return null;
        out.push('0', '0');
      } else if (/^[0-9a-f]{1,4}$/i.test(x)) out.push(x);
      else return null;
    }
    return out;
  };
  const head = groups(dbl[0]!);
  const tail = dbl.length === 2 ? groups(dbl[1]!) : [];
  if (!head || !tail) return false;
  const count = head.length + tail.length;
  return dbl.length === 2 ? count <= 7 : count === 8;
}

/** Split a raw request target into its path and query (query without the `?`, or null). */
export function splitTarget(target: string): { path: string; query: string | null } {
  const q = target.indexOf('?');
  return q < 0 ? { path: target, query: null } : { path: target.slice(0, q), query: target.slice(q + 1) };
}

/**
 * Percent-decode once, the way Python's `urllib.parse.unquote` does (Airut's semantics): escapes become bytes,
 * read as UTF-8 with U+FFFD for invalid sequences; a malformed escape such as `%ZZ` stays as written; `+` stays.
 */
export function percentDecode(s: string): string {
  if (!s.includes('%')) return s;
  const bytes: number[] = [];
  const enc = new TextEncoder();
  for (let i = 0; i < s.length;) {
    const c = s[i]!;
    if (c === '%' && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 3;
    } else {
      const cp = s.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      for (const b of enc.encode(ch)) bytes.push(b);
      i += ch.length;
    }
  }
  return new TextDecoder('utf-8', { fatal: false }).decode(Uint8Array.from(bytes));
}

/**
 * Why a path is refused before any rule is consulted, or null when it is acceptable. Checked on the path only —
 * Airut checks path+query, so `/a/..?x` slipped through while `/a?r=/../` was refused (airut-behaviour.md item 39).
 */
export function pathProblem(rawPath: string): string | null {
  if (!rawPath.startsWith('/')) return 'the path must start with "/"';
  const decoded = percentDecode(rawPath);
  if (decoded.includes('\0')) return 'the path contains a NUL byte';
  if (decoded.includes('\\')) return 'the path contains a backslash';
  if (decoded.split('/').some((seg) => seg === '..')) return 'the path contains a ".." segment';
  return null;
}

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/**
 * RFC 3986 §6.2.2 normalisation for matching: escapes of unreserved characters are decoded, other escapes get
 * upper-case hex. `/%61pi` and `/api` name the same resource to every server, so they get the same decision.
 */
export function normalizeTarget(target: string): string {
  if (!target.includes('%')) return target;
  return target.replace(/%([0-9a-fA-F]{2})/g, (_m, hex: string) => {
    const ch = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(ch) ? ch : '%' + hex.toUpperCase();
  });
}

export function hostMatches(host: string, pattern: string): boolean {
  let p = pattern.toLowerCase();
  if (p.endsWith('.') && p.length > 1) p = p.slice(0, -1);
  if (p.startsWith('[') && p.endsWith(']')) p = p.slice(1, -1);
  return fnmatchIgnoreCase(host, p);
}

/** Both sides are normalised the same way, so a rule written with `%7e` matches a request that says `~`. */
function pathMatches(target: string, pattern: string): boolean {
  return pattern === '' || fnmatchCase(target, normalizeTarget(pattern));
}

/** `method` upper-case; an empty list allows every method. */
export function methodMatches(method: string, methods: readonly string[]): boolean {
  return methods.length === 0 || methods.some((m) => m.toUpperCase() === method);
}

function q(s: string): string {
  return JSON.stringify(s);
}

/**
 * An allowlist entry as a one-line YAML sequence item, ready to paste under `url_prefixes:`. Strings are JSON-quoted
 * (valid YAML double-quoted scalars, so nothing the sandbox put in a path can break out of them).
 */
export function entryYaml(entry: UrlPrefixRule): string {
  const list = (items: readonly string[]) => `[${items.map((i) => (/^[A-Za-z]+$/.test(i) ? i : q(i))).join(', ')}]`;
  const parts = [`host: ${q(entry.host)}`];
  if (entry.path !== '') parts.push(`path: ${q(entry.path)}`);
  if (entry.methods.length > 0) parts.push(`methods: ${list(entry.methods.map((m) => m.toUpperCase()))}`);
  if (entry.graphql) {
    const g = entry.graphql;
    const lists = (['queries', 'mutations', 'subscriptions'] as const)
      .filter((k) => g[k] !== undefined)
      .map((k) => `${k}: [${g[k]!.map(q).join(', ')}]`);
    parts.push(`graphql: {${lists.join(', ')}}`);
  }
  return `- {${parts.join(', ')}}`;
}

/**
 * The one allowlist entry that would permit exactly this request (see `entryYaml`); wildcard characters in the path
 * are escaped so the entry matches this path only. A port other than the scheme's default is named in the host
 * (`registry.internal:5000`), the only way to open it.
 */
export function hintFor(method: string, host: string, target: string, port?: number, scheme: Scheme = 'https'): string {
  const { path, query } = splitTarget(target);
  const pathPattern = query === null ? literalPattern(path) : `${escapeGlob(path)}[?]*`;
  const entryHost = port === undefined ? host : formatAuthority(host, port, scheme);
  return entryYaml({ host: entryHost, path: pathPattern, methods: [method] });
}

export function describeRule(rule: MatchedRule): string {
  if (rule.kind === 'domain') return `domains[${rule.index}] ${rule.pattern}`;
  const e = rule.entry;
  const methods = e.methods.length ? ` methods=${e.methods.map((m) => m.toUpperCase()).join(',')}` : '';
  const graphql = e.graphql ? ' +graphql filter' : '';
  return `url_prefixes[${rule.index}] ${e.host}${e.path === '' ? ' (any path)' : ' ' + e.path}${methods}${graphql}`;
}

export function decide(request: PolicyRequest, allowlist: Allowlist): Decision {
  const method = request.method.toUpperCase();
  const rawTarget = request.target === '' ? '/' : request.target;
  const host = normalizeHost(request.host);
  if (host === null) {
    return {
      allowed: false,
      code: 'invalid_host',
      host: request.host,
      path: rawTarget,
      reason: `"${request.host}" is not a valid host name or IP literal`,
    };
  }
  const { path } = splitTarget(rawTarget);
  const problem = pathProblem(path);
  if (problem !== null) {
    return { allowed: false, code: 'invalid_path', host, path: rawTarget, reason: problem };
  }
  const target = normalizeTarget(rawTarget);
  const scheme = request.scheme ?? 'https';
  const written = explicitPort(request.host);
  const port = request.port ?? (written !== null ? written : DEFAULT_PORTS[scheme]);
  // A pattern that names the host on another port: worth its own deny code, since only a port is missing.
  let otherPort = false;
  const inEntry = (pattern: string): boolean => {
    if (endpointMatches(host, port, scheme, pattern)) return true;
    if (!otherPort && hostMatches(host, splitHostPattern(pattern).host)) otherPort = true;
    return false;
  };

  for (const [index, pattern] of allowlist.domains.entries()) {
    if (inEntry(pattern)) {
      const rule: MatchedRule = { kind: 'domain', index, pattern };
      return {
        allowed: true,
        code: 'allowed',
        rule,
        host,
        path: rawTarget,
        reason: `allowed by ${describeRule(rule)}`,
      };
    }
  }
  let hostSeen = false;
  let pathSeen: MatchedRule | null = null;
  for (const [index, entry] of allowlist.url_prefixes.entries()) {
    if (!inEntry(entry.host)) continue;
    hostSeen = true;
    if (!pathMatches(target, entry.path)) continue;
    pathSeen ??= { kind: 'url_prefix', index, entry };
    if (!methodMatches(method, entry.methods)) continue;
    const rule: MatchedRule = { kind: 'url_prefix', index, entry };
    return { allowed: true, code: 'allowed', rule, host, path: rawTarget, reason: `allowed by ${describeRule(rule)}` };
  }
  const hint = hintFor(method, host, rawTarget, port, scheme);
  if (pathSeen) {
    return {
      allowed: false,
      code: 'method_not_allowed',
      host,
      path: rawTarget,
      hint,
      rule: pathSeen,
      reason: `method ${method} is not allowed for ${host}${splitTarget(rawTarget).path}; add it to the matching entry's methods`,
    };
  }
  if (hostSeen) {
    return {
      allowed: false,
      code: 'path_not_allowed',
      host,
      path: rawTarget,
      hint,
      reason: `no url_prefixes entry for ${host} matches the path ${rawTarget}`,
    };
  }
  if (otherPort) {
    return {
      allowed: false,
      code: 'port_not_allowed',
      host,
      path: rawTarget,
      hint,
      reason: `${host} is allowed on other ports, not on ${port}: an entry opens a port only by naming it (${formatAuthority(host, port, scheme)}), or the default one by naming none`,
    };
  }
  return {
    allowed: false,
    code: 'host_not_allowed',
    host,
    path: rawTarget,
    hint,
    reason: `${host} is not in the network allowlist`,
  };
}
