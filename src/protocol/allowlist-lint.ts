import { splitHostPattern, type Allowlist, type UrlPrefixRule } from './allowlist.js';
import { nearest } from './edit-distance.js';
import { fnmatchCase, globProblems, isGlob } from './fnmatch.js';
import { HTTP_METHODS, NEVER_FORWARDED_METHODS } from './http-methods.js';
import { normalizeTarget, pathProblem } from './policy.js';

/**
 * The policy linter: what a schema cannot see in a valid-looking allowlist. Pure: it works on the parsed allowlist and
 * reports findings by key path; the CLI turns key paths into `file:line:col`.
 *
 * Airut drop-in wins ties. A finding is an **error** in every file when the entry can never match anything (a URL in
 * `domains`, an unknown method, a class such as `[z-a]`): rejecting it changes no request's fate, only the author's
 * understanding. Findings about entries Airut gives a meaning to — a bare `*` (every host), a duplicate entry (same
 * as one), an unclosed `[` (a literal `[` to Python's fnmatch) — are errors in airlock's own `.airlock/` files and
 * **warnings** in Airut's `.airut/` files, which airlock reads unchanged. Everything else is a warning.
 */

export type LintSeverity = 'error' | 'warning';

export interface LintFinding {
  severity: LintSeverity;
  /** Key path into the file, e.g. `['url_prefixes', 3, 'methods', 0]`. */
  path: Array<string | number>;
  message: string;
}

export interface LintOptions {
  /** The file is Airut's own (read from `.airut/`): findings Airut gives a meaning to are warnings, not errors. */
  airut: boolean;
}

type Where = Array<string | number>;

/** A pattern made only of stars means "anything". */
function isMatchAll(pattern: string): boolean {
  return /^\*+$/.test(pattern);
}

/** The part of a glob before its first wildcard or class, and the part after its last. */
function literalEnds(pattern: string): { prefix: string; suffix: string } {
  const first = pattern.search(/[*?[]/);
  if (first < 0) return { prefix: pattern, suffix: pattern };
  let last = -1;
  for (let i = pattern.length - 1; i >= 0; i--) {
    if ('*?]'.includes(pattern[i]!)) {
      last = i;
      break;
    }
  }
  return { prefix: pattern.slice(0, first), suffix: pattern.slice(last + 1) };
}

/**
 * Whether every value `inner` matches is also matched by `outer` (sound, not complete: false means "not shown").
 * Exact inner patterns are decided by matching; glob ones only against outer patterns of the shape `PREFIX*SUFFIX`.
 */
export function patternCovers(
  outer: string,
  inner: string,
  match: (value: string, pattern: string) => boolean,
): boolean {
  if (outer === inner || isMatchAll(outer)) return true;
  if (!isGlob(inner)) return match(inner, outer);
  const star = /^([^*?[\]]*)\*+([^*?[\]]*)$/.exec(outer);
  if (!star) return false;
  const ends = literalEnds(inner);
  return ends.prefix.startsWith(star[1]!) && ends.suffix.endsWith(star[2]!);
}

/**
 * Whether every host `inner` matches is matched by `outer` too (sound, not complete). A pattern opens one port — the
 * one it names, or the default one — so only patterns on the same port can cover each other.
 */
export function hostCovers(outer: string, inner: string): boolean {
  const o = splitHostPattern(outer);
  const i = splitHostPattern(inner);
  if (o.port !== i.port) return false;
  // Both sides as hostMatches() reads a pattern, then compared as such: values are normalised hosts.
  return patternCovers(canonicalHost(o.host), canonicalHost(i.host), (v, p) => fnmatchCase(v, p));
}

/** An empty path, `*` and `/*` all allow every request target (targets always start with `/`). */
function isAnyPath(path: string): boolean {
  return path === '' || isMatchAll(path) || /^\/\*+$/.test(path);
}

/** Whether every request target `inner` matches is matched by `outer` too (sound, not complete). */
export function pathCovers(outer: string, inner: string): boolean {
  if (isAnyPath(outer)) return true;
  if (isAnyPath(inner)) return false;
  return patternCovers(normalizeTarget(outer), normalizeTarget(inner), (v, p) => fnmatchCase(v, p));
}

function methodsCover(outer: readonly string[], inner: readonly string[]): boolean {
  if (outer.length === 0) return true;
  if (inner.length === 0) return false;
  const set = new Set(outer.map((m) => m.toUpperCase()));
  return inner.every((m) => set.has(m.toUpperCase()));
}

/** A host pattern the way `hostMatches` reads it: lower case, one trailing dot and IPv6 brackets removed. */
function canonicalHost(pattern: string): string {
  let p = pattern.toLowerCase();
  if (p.endsWith('.') && p.length > 1) p = p.slice(0, -1);
  if (p.startsWith('[') && p.endsWith(']')) p = p.slice(1, -1);
  return p;
}

/** A host pattern with its port, as compared for duplicates: `A.test.:5000` and `a.test:5000` are one. */
function canonicalEndpoint(pattern: string): string {
  const { host, port } = splitHostPattern(pattern);
  return port === null ? canonicalHost(host) : `${canonicalHost(host)}:${port}`;
}

function entryKey(e: UrlPrefixRule): string {
  const methods = [...new Set(e.methods.map((m) => m.toUpperCase()))].sort();
  return JSON.stringify([canonicalEndpoint(e.host), normalizeTarget(e.path), methods, e.graphql ?? null]);
}

function describeEntry(index: number, e: UrlPrefixRule): string {
  const methods = e.methods.length ? ` [${e.methods.map((m) => m.toUpperCase()).join(', ')}]` : '';
  return `url_prefixes[${index}] (${e.host}${e.path === '' ? '' : ' ' + e.path}${methods})`;
}

/** What is wrong with a host pattern that makes it unable to match any host, or null. */
function deadHostReason(pattern: string): string | null {
  const url = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)/i.exec(pattern);
  if (url) {
    const host = url[2]!.replace(/^[^@]*@/, '');
    return `"${pattern}" is a URL; a host pattern is the host only: write "${host}"`;
  }
  if (pattern.includes('/')) {
    const host = pattern.slice(0, pattern.indexOf('/'));
    return `"${pattern}" has a path; a host pattern is the host only ("${host}"), and a path goes in a url_prefixes entry's \`path\``;
  }
  if (pattern.includes('@')) return `"${pattern}" holds user information (@); write the host only`;
  if (pattern.includes('#')) return `"${pattern}" holds a fragment (#); write the host only`;
  return portSyntaxReason(pattern);
}

/** The proxy answers DNS on 53 and never opens an HTTP listener there (policy.ts `declaredPorts`). */
const DNS_PORT = 53;

/**
 * What is wrong with the port a host pattern names (`host:5000`, `[fd00::1]:5000`), or null. A port is one number:
 * anything else after the colon is read as part of the host, which no host has.
 */
function portSyntaxReason(pattern: string): string | null {
  const onePort = 'name one port as a number (`registry.internal:5000`); ranges and wildcard ports do not exist';
  if (/^\[[^\]]*:/.test(pattern)) {
    const end = pattern.indexOf(']');
    if (end < 0 || end === pattern.length - 1 || splitHostPattern(pattern).port !== null) return null;
    return `"${pattern}": after the bracketed address only ":PORT" may follow; ${onePort}`;
  }
  const named = splitHostPattern(pattern).port;
  if (named === DNS_PORT) {
    return `"${pattern}": port 53 is the proxy's DNS, where no HTTP listener is ever opened`;
  }
  const colons = pattern.split(':').length - 1;
  if (colons === 0 || named !== null) return null;
  // Only IPv6 literals have colons in a host: a pattern that can still match one (`fd00:*`) is left alone.
  const ipv6Pattern = /^[0-9a-f:.*?[\]!-]+$/i.test(pattern);
  if (ipv6Pattern && (colons > 1 || isGlob(pattern))) return null;
  if (colons === 1) {
    const port = pattern.slice(pattern.indexOf(':') + 1);
    return `"${pattern}": the port "${port}" is not a number; ${onePort}`;
  }
  return `"${pattern}" has more than one ":"; ${onePort}, and write an IPv6 address with a port in brackets (\`[fd00::1]:5000\`)`;
}

/**
 * How many literal DNS labels follow a host pattern's last wildcard: `*.example.com` → 2, `*.com` → 1, `*github.com`
 * → 1 (the star is glued to `github`, so `evilgithub.com` matches too).
 */
function labelsAfterWildcard(pattern: string): number {
  const suffix = literalEnds(splitHostPattern(pattern).host).suffix;
  return suffix
    .split('.')
    .slice(1)
    .filter((l) => l !== '').length;
}

export function lintAllowlist(allowlist: Allowlist, options: LintOptions): LintFinding[] {
  const findings: LintFinding[] = [];
  const add = (severity: LintSeverity, path: Where, message: string): void => {
    findings.push({ severity, path, message });
  };
  /** Errors in airlock's own files, warnings in Airut's (which give the entry a meaning). */
  const meaningful = options.airut ? 'warning' : 'error';
  const airutNote = options.airut ? ' (a warning only because this is an Airut file, read unchanged)' : '';
  const allowAll = allowlist.allow_all === true;
  let matchAllSeen = false;

  /** Returns false when the pattern can never match (reported; later checks would only add noise). */
  const lintHost = (pattern: string, at: Where, fullyOpen: boolean): boolean => {
    const dead = deadHostReason(pattern);
    if (dead) {
      add('error', at, `${dead}; as written it can never match`);
      return false;
    }
    const { host, port } = splitHostPattern(pattern);
    if (isMatchAll(host)) {
      const where = port === null ? '' : ` on port ${port}`;
      if (fullyOpen) {
        matchAllSeen = true;
        if (!allowAll) {
          add(
            meaningful,
            at,
            `a bare "*" allows every host, path and method${where}: the network sandbox then blocks nothing there; ` +
              `say so with \`allow_all: true\` at the top of the file, or list the hosts${airutNote}`,
          );
        }
      } else {
        add(
          'warning',
          at,
          `host "${pattern}" applies this entry to every host${where}; name the hosts it is meant for`,
        );
      }
      return true;
    }
    if (isGlob(pattern)) {
      lintGlob(pattern, at);
      if (labelsAfterWildcard(pattern) < 2) {
        add(
          'warning',
          at,
          `"${pattern}" allows far more than it names: its wildcard is followed by fewer than two whole labels, so it ` +
            `matches hosts of other owners (write "*.example.com"-style patterns, and the bare name separately)`,
        );
      }
    }
    return true;
  };

  const lintGlob = (pattern: string, at: Where): void => {
    for (const problem of globProblems(pattern)) {
      if (problem.kind === 'unclosed-class') {
        add(
          meaningful,
          at,
          `"${pattern}": the "[" at offset ${problem.at} is never closed, so it matches a literal "[" — ` +
            `write "[[]" for a literal bracket, or close the class${airutNote}`,
        );
      } else {
        add('error', at, `"${pattern}": the class at offset ${problem.at} matches no character, so it can never match`);
      }
    }
  };

  // domains
  const seenDomains = new Map<string, number>();
  for (const [i, pattern] of allowlist.domains.entries()) {
    const at: Where = ['domains', i];
    if (!lintHost(pattern, at, true)) continue;
    const key = canonicalEndpoint(pattern);
    const first = seenDomains.get(key);
    if (first !== undefined) {
      add(meaningful, at, `duplicate of domains[${first}] ("${allowlist.domains[first]}"); remove one${airutNote}`);
      continue;
    }
    seenDomains.set(key, i);
    // A bare `*` covers everything; its own finding says so once, rather than once per entry it shadows.
    const wider = allowlist.domains.findIndex((p, j) => j < i && !isMatchAll(p) && hostCovers(p, pattern));
    if (wider >= 0) {
      add('warning', at, `shadowed by domains[${wider}] ("${allowlist.domains[wider]}"), which already allows it`);
    }
  }

  // url_prefixes
  const seenEntries = new Map<string, number>();
  for (const [i, entry] of allowlist.url_prefixes.entries()) {
    const at: Where = ['url_prefixes', i];
    const live = lintHost(
      entry.host,
      [...at, 'host'],
      isAnyPath(entry.path) && entry.methods.length === 0 && !entry.graphql,
    );

    if (entry.path !== '') {
      if (isGlob(entry.path)) lintGlob(entry.path, [...at, 'path']);
      // The part of the path every matching request has for sure: all of an exact path (without its query), the
      // complete segments before a glob's first wildcard.
      const certain = isGlob(entry.path)
        ? literalEnds(entry.path).prefix.replace(/[^/]*$/, '')
        : entry.path.split('?')[0]!;
      const problem = certain.startsWith('/') ? pathProblem(certain) : null;
      if (problem !== null) {
        add(
          'error',
          [...at, 'path'],
          `"${entry.path}" can never match: ${problem}, and such requests are refused (invalid_path) before any rule`,
        );
      }
    }

    for (const [m, method] of entry.methods.entries()) {
      const upper = method.toUpperCase();
      if (NEVER_FORWARDED_METHODS.includes(upper)) {
        add('warning', [...at, 'methods', m], `${upper} is never forwarded, whatever the allowlist says`);
      } else if (!HTTP_METHODS.includes(upper)) {
        const near = nearest(upper, HTTP_METHODS);
        add(
          'error',
          [...at, 'methods', m],
          `unknown HTTP method "${method}"${near ? `; did you mean ${near}?` : ''} (no client can send it, so it never matches)`,
        );
      }
    }

    const key = entryKey(entry);
    const first = seenEntries.get(key);
    if (first !== undefined) {
      add(meaningful, at, `duplicate of url_prefixes[${first}]; remove one${airutNote}`);
      continue;
    }
    seenEntries.set(key, i);
    if (!live) continue;

    const domain = allowlist.domains.findIndex((p) => !isMatchAll(p) && hostCovers(p, entry.host));
    if (domain >= 0) {
      add(
        'warning',
        at,
        `domains[${domain}] ("${allowlist.domains[domain]}") already allows every path and method on ${entry.host} ` +
          `and is tried first, so this narrower entry never decides` +
          (entry.graphql ? ' and its graphql filter never applies' : '') +
          `; remove the domains entry to enforce it`,
      );
      continue;
    }
    const wider = allowlist.url_prefixes.findIndex(
      (e, j) =>
        j < i &&
        hostCovers(e.host, entry.host) &&
        pathCovers(e.path, entry.path) &&
        methodsCover(e.methods, entry.methods),
    );
    if (wider >= 0) {
      const earlier = allowlist.url_prefixes[wider]!;
      add(
        'warning',
        at,
        `shadowed by the earlier ${describeEntry(wider, earlier)}: the first match wins, so this entry never decides` +
          (entry.graphql && !earlier.graphql ? ' and its graphql filter never applies' : ''),
      );
    }
  }

  if (allowAll && !matchAllSeen) {
    add(
      'warning',
      ['allow_all'],
      'allow_all: true has no effect: it only acknowledges a bare "*" entry, and there is none',
    );
  }
  return findings;
}

export function hasErrors(findings: readonly LintFinding[]): boolean {
  return findings.some((f) => f.severity === 'error');
}
