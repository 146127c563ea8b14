import type { Allowlist } from './allowlist.js';
import { escapeGlob, literalPattern } from './fnmatch.js';
import { decide, DEFAULT_PORTS, formatAuthority, normalizeTarget, splitTarget, type Scheme } from './policy.js';

/**
 * `airlock allowlist suggest`: an allowlist learned from what a workload did. Pure: the CLI reads the logs and writes
 * the file.
 *
 * Per host and per method, the observed paths form a tree of segments. A directory becomes a wildcard (`dir/*`) only
 * where the workload itself fanned out below it — into many names, or into names that are plainly identifiers
 * (numbers, hashes, versions, files of one type) — or where it is the root of a package-registry layout (npm, PyPI,
 * the Go module proxy). Everything else stays exact. So the suggestion allows every observed request, allows other
 * paths only below a directory where the workload fanned out (or a registry root), never allows a method on a path
 * where that method was not used, never names a host that was not seen, and never emits a bare `*` host. A host that
 * used many methods on many paths gets one `domains` entry instead. Output order does not depend on log order.
 *
 * Ports are learned as seen: a request on the scheme's default port (443, 80) gives an entry without a port; one on
 * another port gives an entry naming it (`registry.internal:5000`), which opens that port and only it. A host seen on
 * two ports is two hosts here, each with its own entries.
 */

export interface ObservedRequest {
  method: string;
  /** Normalised host as the log records it (lower case, no trailing dot). */
  host: string;
  /** Request target as sent: path and optional `?query`. */
  target: string;
  /** The port the request went to (the log's `port`); absent means the scheme's default. */
  port?: number;
  /** Default `https`. */
  scheme?: Scheme;
}

interface EntryEvidence {
  /** Requests the entry allows. */
  requests: number;
  /** The most frequent of them, as `METHOD /path` (queries shown as `?…`). */
  examples: string[];
  /** Whether there are other distinct requests than those examples. */
  moreExamples: boolean;
}

/** `host` is a host pattern as the allowlist writes it: the host, with `:port` when the port is not the default. */
export type SuggestedEntry =
  | ({ kind: 'domain'; host: string; methods: string[] } & EntryEvidence)
  | ({ kind: 'url_prefix'; host: string; path: string; methods: string[] } & EntryEvidence);

export interface Suggestion {
  entries: SuggestedEntry[];
  /** Observed requests the existing allowlist (for `--merge`) already allows: nothing is suggested for them. */
  alreadyAllowed: number;
}

/** A directory with at least this many distinct names below it is generalised whatever the names look like. */
export const FANOUT_NAMES = 4;
/** A host with at least this many methods and this many entries gets one `domains` entry instead. */
export const DOMAIN_METHODS = 4;
export const DOMAIN_ENTRIES = 6;
/** How many example requests an entry's comment lists. */
const EXAMPLES = 3;

const METHOD_ORDER = ['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH', 'DELETE'];

export function compareMethods(a: string, b: string): number {
  const ia = METHOD_ORDER.indexOf(a);
  const ib = METHOD_ORDER.indexOf(b);
  if (ia >= 0 || ib >= 0) return (ia < 0 ? Infinity : ia) - (ib < 0 ? Infinity : ib);
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Names that are plainly values rather than a fixed part of an API: ids, hashes, versions, dates. */
function isIdentifierLike(name: string): boolean {
  return (
    /^\d+$/.test(name) ||
    /^[0-9a-f]{7,}$/i.test(name) ||
    /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(name) ||
    /^v?\d+(\.\d+)+([-+.][0-9A-Za-z.-]*)?$/.test(name) ||
    /^\d{4}-\d{2}-\d{2}/.test(name)
  );
}

function extensionOf(name: string): string | null {
  const m = /\.(tar\.gz|[A-Za-z0-9]{1,6})$/.exec(name);
  return m && m.index > 0 ? m[1]!.toLowerCase() : null;
}

/** Whether the names below one directory say "this is a collection": generalise it to `dir/*`. */
export function isFanOut(names: readonly string[]): boolean {
  if (names.length >= FANOUT_NAMES) return true;
  if (names.length < 2) return false;
  if (names.every(isIdentifierLike)) return true;
  const ext = extensionOf(names[0]!);
  return ext !== null && names.every((n) => extensionOf(n) === ext);
}

/**
 * The directory (path prefix, without its trailing `/`) under which a path is a package-registry resource, or null:
 * npm (`…/<pkg>/-/<pkg>-<version>.tgz`, also scoped), PyPI (`/simple/<pkg>/`, `/pypi/<pkg>/json`, `/packages/…`
 * files), the Go module proxy (`…/@v/…`, `…/@latest`).
 */
export function registryRoot(path: string): string | null {
  const npm = /^(.*?)\/(?:@[^/]+\/)?[^/@][^/]*\/-\/[^/]+\.tgz$/.exec(path);
  if (npm) return npm[1]!;
  const pypi =
    /^(.*?\/(?:simple|pypi))\/[^/]+\/(?:json)?$/.exec(path) ??
    /^(.*?\/packages)\/.+\.(?:whl|tar\.gz|zip|egg)$/.exec(path);
  if (pypi) return pypi[1]!;
  const go = /^\/.+\/@(?:v\/|latest$)/.exec(path);
  if (go) return '';
  return null;
}

interface Node {
  children: Map<string, Node>;
  /** Requests (with and without a query) that end exactly here. */
  plain: number;
  withQuery: number;
}

function newNode(): Node {
  return { children: new Map(), plain: 0, withQuery: 0 };
}

/** Path templates for one host and method: exact paths, `path[?]*` and `dir/*`. */
function templatesFor(paths: ReadonlyArray<{ path: string; hasQuery: boolean }>): string[] {
  const templates = new Set<string>();
  const roots = new Set<string>();
  for (const { path } of paths) {
    const root = registryRoot(path);
    if (root !== null) roots.add(root);
  }
  const trie = newNode();
  for (const { path, hasQuery } of paths) {
    const root = [...roots].find((r) => path.startsWith(r + '/'));
    if (root !== undefined) {
      templates.add(`${escapeGlob(root)}/*`);
      continue;
    }
    let node = trie;
    for (const segment of path.slice(1).split('/')) {
      let child = node.children.get(segment);
      if (!child) node.children.set(segment, (child = newNode()));
      node = child;
    }
    if (hasQuery) node.withQuery++;
    else node.plain++;
  }
  const walk = (node: Node, prefix: string, isRoot: boolean): void => {
    // The directory itself, when it was requested (the root's "itself" is the empty path: never requested).
    if (!isRoot) {
      if (node.plain > 0) templates.add(literalPattern(prefix));
      if (node.withQuery > 0) templates.add(`${escapeGlob(prefix)}[?]*`);
    }
    const names = [...node.children.keys()];
    if (isFanOut(names)) {
      templates.add(`${escapeGlob(prefix)}/*`);
      return;
    }
    for (const name of names) walk(node.children.get(name)!, `${prefix}/${name}`, false);
  };
  walk(trie, '', true);
  return [...templates];
}

interface HostRequests {
  byMethod: Map<string, Array<{ path: string; hasQuery: boolean; shown: string }>>;
  total: number;
}

/** What a comment shows of a request: the method and the path, never the query (it may carry values). */
function shown(method: string, target: string): string {
  const { path, query } = splitTarget(target);
  // Sandbox-chosen text in a comment a person reviews: control, line-break and bidi characters (anything not
  // printable ASCII) are shown as escapes, so a path can neither end the comment nor disguise itself.
  const clean = path.replace(/[^\x20-\x7e]/gu, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
  return `${method} ${clean}${query === null ? '' : '?…'}`;
}

function topExamples(counts: Map<string, number>): { examples: string[]; moreExamples: boolean } {
  const examples = [...counts.entries()]
    .sort(([a, ca], [b, cb]) => cb - ca || compareStrings(a, b))
    .slice(0, EXAMPLES)
    .map(([example]) => example);
  return { examples, moreExamples: counts.size > examples.length };
}

export function suggestAllowlist(requests: Iterable<ObservedRequest>, existing?: Allowlist): Suggestion {
  const hosts = new Map<string, HostRequests>();
  let alreadyAllowed = 0;
  for (const r of requests) {
    const method = r.method.toUpperCase();
    const target = normalizeTarget(r.target === '' ? '/' : r.target);
    if (!target.startsWith('/') || r.host === '' || /^\*+$/.test(r.host)) continue;
    const scheme = r.scheme ?? 'https';
    const port = r.port ?? DEFAULT_PORTS[scheme];
    if (!Number.isInteger(port) || port < 1 || port > 65535) continue;
    if (existing && decide({ method, host: r.host, target, scheme, port }, existing).allowed) {
      alreadyAllowed++;
      continue;
    }
    const { path, query } = splitTarget(target);
    // The entry's host pattern: the port is part of it whenever it is not the default (80 in clear, 443 on TLS).
    const authority = formatAuthority(r.host, port, scheme);
    let host = hosts.get(authority);
    if (!host) hosts.set(authority, (host = { byMethod: new Map(), total: 0 }));
    host.total++;
    let list = host.byMethod.get(method);
    if (!list) host.byMethod.set(method, (list = []));
    list.push({ path, hasQuery: query !== null, shown: shown(method, target) });
  }

  const entries: SuggestedEntry[] = [];
  for (const hostName of [...hosts.keys()].sort(compareStrings)) {
    const host = hosts.get(hostName)!;
    const byTemplate = new Map<string, { methods: Set<string>; requests: number; examples: Map<string, number> }>();
    for (const [method, list] of host.byMethod) {
      const templates = templatesFor(list);
      for (const template of templates) {
        let t = byTemplate.get(template);
        if (!t) byTemplate.set(template, (t = { methods: new Set(), requests: 0, examples: new Map() }));
        t.methods.add(method);
      }
      // Each request is counted once, under the first template (in sorted order) that allows it.
      const ordered = templates.sort(compareStrings);
      const allow = (template: string): Allowlist => ({
        domains: [],
        url_prefixes: [{ host: hostName, path: template, methods: [method] }],
      });
      const allowlists = ordered.map((template) => [template, allow(template)] as const);
      for (const item of list) {
        const target = item.hasQuery ? `${item.path}?` : item.path;
        const match = allowlists.find(([, a]) => decide({ method, host: hostName, target }, a).allowed);
        const t = byTemplate.get(match?.[0] ?? ordered[0]!)!;
        t.requests++;
        t.examples.set(item.shown, (t.examples.get(item.shown) ?? 0) + 1);
      }
    }
    const methods = [...host.byMethod.keys()].sort(compareMethods);
    if (methods.length >= DOMAIN_METHODS && byTemplate.size >= DOMAIN_ENTRIES) {
      const examples = new Map<string, number>();
      for (const t of byTemplate.values()) for (const [e, c] of t.examples) examples.set(e, (examples.get(e) ?? 0) + c);
      entries.push({ kind: 'domain', host: hostName, methods, requests: host.total, ...topExamples(examples) });
      continue;
    }
    // One entry per template; templates used by the same methods stay separate entries (a path is one pattern).
    for (const template of [...byTemplate.keys()].sort(compareStrings)) {
      const t = byTemplate.get(template)!;
      entries.push({
        kind: 'url_prefix',
        host: hostName,
        path: template,
        methods: [...t.methods].sort(compareMethods),
        requests: t.requests,
        ...topExamples(t.examples),
      });
    }
  }
  return { entries, alreadyAllowed };
}

/** The suggestion as an allowlist (what the proxy would enforce), e.g. to check it against the log it came from. */
export function suggestionAllowlist(suggestion: Suggestion): Allowlist {
  const allowlist: Allowlist = { domains: [], url_prefixes: [] };
  for (const e of suggestion.entries) {
    if (e.kind === 'domain') allowlist.domains.push(e.host);
    else allowlist.url_prefixes.push({ host: e.host, path: e.path, methods: e.methods });
  }
  return allowlist;
}
