/**
 * Python `fnmatch` semantics, which Airut's allowlists are written against (airut-behaviour.md §1d items 31-32):
 * anchored; `*` matches anything including `.` and `/`; `?` one character; `[seq]` / `[!seq]` classes. A pattern
 * without `*` or `?` is compared literally — `[` alone does not make a glob, as in Airut.
 */

export function isGlob(pattern: string): boolean {
  return pattern.includes('*') || pattern.includes('?');
}

const cache = new Map<string, RegExp>();
const CACHE_LIMIT = 4096;

/** Translate a glob to an anchored RegExp exactly as CPython's fnmatch.translate does (minus its caching). */
export function globToRegExp(pattern: string): RegExp {
  const hit = cache.get(pattern);
  if (hit) return hit;
  let out = '';
  let i = 0;
  const n = pattern.length;
  while (i < n) {
    const c = pattern[i++]!;
    if (c === '*') {
      // Collapse runs of '*' — they mean the same and a run would only slow the regex.
      while (pattern[i] === '*') i++;
      out += '[\\s\\S]*';
    } else if (c === '?') {
      out += '[\\s\\S]';
    } else if (c === '[') {
      let j = i;
      if (pattern[j] === '!') j++;
      if (pattern[j] === ']') j++;
      while (j < n && pattern[j] !== ']') j++;
      if (j >= n) {
        out += '\\[';
      } else {
        let body = pattern.slice(i, j);
        i = j + 1;
        let negate = false;
        if (body.startsWith('!')) {
          negate = true;
          body = body.slice(1);
        }
        // Escape everything regex-special inside the class except the range dash.
        const escaped = body.replace(/[\\\]^[]/g, (m) => '\\' + m);
        if (escaped === '') out += negate ? '[\\s\\S]' : '(?!)';
        else out += (negate ? '[^' : '[') + escaped + ']';
      }
    } else {
      out += c.replace(/[.*+?^${}()|[\]\\/]/g, (m) => '\\' + m);
    }
  }
  const re = new RegExp('^' + out + '$', 'u');
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(pattern, re);
  return re;
}

/** Case-sensitive match: glob when the pattern has `*`/`?`, else exact equality. */
export function fnmatchCase(value: string, pattern: string): boolean {
  if (!isGlob(pattern)) return value === pattern;
  return globToRegExp(pattern).test(value);
}

/** Case-insensitive variant used for hosts and header names (both sides lower-cased, as Airut does). */
export function fnmatchIgnoreCase(value: string, pattern: string): boolean {
  return fnmatchCase(value.toLowerCase(), pattern.toLowerCase());
}
