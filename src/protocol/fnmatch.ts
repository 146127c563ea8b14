/**
 * Python `fnmatch` semantics, which Airut's allowlists are written against (airut-behaviour.md §1d items 31-32):
 * anchored; `*` matches anything including `.` and `/`; `?` one character; `[seq]` / `[!seq]` classes (a reversed
 * range such as `z-a` matches nothing, as in CPython). A pattern without `*` or `?` is compared literally — `[`
 * alone does not make a glob, as in Airut.
 *
 * Matching is a linear-space, O(pattern × value) two-pointer walk instead of a backtracking regular expression:
 * the sandbox chooses the value, and `/a/*\/b/*\/c/*` against a long path must not stall the proxy.
 */

export function isGlob(pattern: string): boolean {
  return pattern.includes('*') || pattern.includes('?');
}

type Token =
  | { kind: 'char'; cp: number }
  | { kind: 'any' }
  | { kind: 'star' }
  | { kind: 'class'; negate: boolean; singles: Set<number>; ranges: Array<[number, number]> };

const cache = new Map<string, Token[]>();
const CACHE_LIMIT = 4096;

function codePoints(s: string): number[] {
  const out: number[] = [];
  for (const ch of s) out.push(ch.codePointAt(0)!);
  return out;
}

/** Parse a class body (between `[` and `]`, after an optional `!`) into single characters and ranges. */
function parseClass(body: number[], negate: boolean): Token {
  const singles = new Set<number>();
  const ranges: Array<[number, number]> = [];
  const DASH = 0x2d;
  for (let i = 0; i < body.length; i++) {
    const lo = body[i]!;
    if (body[i + 1] === DASH && i + 2 < body.length) {
      const hi = body[i + 2]!;
      if (lo <= hi) ranges.push([lo, hi]);
      i += 2;
    } else {
      singles.add(lo);
    }
  }
  return { kind: 'class', negate, singles, ranges };
}

export function compileGlob(pattern: string): Token[] {
  const hit = cache.get(pattern);
  if (hit) return hit;
  const p = codePoints(pattern);
  const tokens: Token[] = [];
  const [STAR, QUESTION, OPEN, CLOSE, BANG] = [0x2a, 0x3f, 0x5b, 0x5d, 0x21];
  for (let i = 0; i < p.length;) {
    const c = p[i++]!;
    if (c === STAR) {
      // A run of stars means the same as one.
      if (tokens[tokens.length - 1]?.kind !== 'star') tokens.push({ kind: 'star' });
    } else if (c === QUESTION) {
      tokens.push({ kind: 'any' });
    } else if (c === OPEN) {
      let j = i;
      if (p[j] === BANG) j++;
      if (p[j] === CLOSE) j++;
      while (j < p.length && p[j] !== CLOSE) j++;
      if (j >= p.length) {
        tokens.push({ kind: 'char', cp: OPEN });
      } else {
        const negate = p[i] === BANG;
        tokens.push(parseClass(p.slice(negate ? i + 1 : i, j), negate));
        i = j + 1;
      }
    } else {
      tokens.push({ kind: 'char', cp: c });
    }
  }
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(pattern, tokens);
  return tokens;
}

function matchesOne(t: Token, cp: number): boolean {
  switch (t.kind) {
    case 'char':
      return t.cp === cp;
    case 'any':
      return true;
    case 'class': {
      const inClass = t.singles.has(cp) || t.ranges.some(([lo, hi]) => cp >= lo && cp <= hi);
      return inClass !== t.negate;
    }
    case 'star':
      return false;
  }
}

/**
 * Classic wildcard matching: on a mismatch, resume after the most recent star with one more character consumed
 * by it. Every token except a star consumes exactly one character, so this is exact and never exponential.
 */
export function globMatch(value: string, pattern: string): boolean {
  return globWalk(value, pattern).matched;
}

/** The walk itself, with the number of steps it took (tests bound it: the work must stay O(pattern × value)). */
export function globWalk(value: string, pattern: string): { matched: boolean; steps: number } {
  const tokens = compileGlob(pattern);
  const v = codePoints(value);
  let ti = 0;
  let vi = 0;
  let starTi = -1;
  let starVi = 0;
  let steps = 0;
  while (vi < v.length) {
    steps++;
    const t = tokens[ti];
    if (t !== undefined && t.kind === 'star') {
      starTi = ti++;
      starVi = vi;
    } else if (t !== undefined && matchesOne(t, v[vi]!)) {
      ti++;
      vi++;
    } else if (starTi >= 0) {
      ti = starTi + 1;
      vi = ++starVi;
    } else {
      return { matched: false, steps };
    }
  }
  while (tokens[ti]?.kind === 'star') ti++;
  return { matched: ti === tokens.length, steps };
}

/** Case-sensitive match: glob when the pattern has `*`/`?`, else exact equality. */
export function fnmatchCase(value: string, pattern: string): boolean {
  if (!isGlob(pattern)) return value === pattern;
  return globMatch(value, pattern);
}

/** Case-insensitive variant used for hosts and header names (both sides lower-cased, as Airut does). */
export function fnmatchIgnoreCase(value: string, pattern: string): boolean {
  return fnmatchCase(value.toLowerCase(), pattern.toLowerCase());
}

export interface GlobMatcher {
  test(value: string): boolean;
}

/** A reusable matcher for one glob (compiled once; matching as `globMatch`). */
export function globMatcher(pattern: string): GlobMatcher {
  compileGlob(pattern);
  return { test: (value) => globMatch(value, pattern) };
}

export type GlobProblem = { kind: 'unclosed-class'; at: number } | { kind: 'empty-class'; at: number };

/**
 * What is wrong with a glob's `[…]` classes, for the policy linter: a `[` that never closes (Python's fnmatch, and so
 * Airut, silently reads it as a literal `[`) or a class that can match no character (only reversed ranges such as
 * `[z-a]`, so the whole pattern can never match). Positions are code-point offsets. Only meaningful for globs: in a
 * pattern without `*` or `?`, `[` is an ordinary character.
 */
export function globProblems(pattern: string): GlobProblem[] {
  const p = codePoints(pattern);
  const [OPEN, CLOSE, BANG] = [0x5b, 0x5d, 0x21];
  const problems: GlobProblem[] = [];
  for (let i = 0; i < p.length;) {
    if (p[i++] !== OPEN) continue;
    const at = i - 1;
    let j = i;
    if (p[j] === BANG) j++;
    if (p[j] === CLOSE) j++;
    while (j < p.length && p[j] !== CLOSE) j++;
    if (j >= p.length) {
      problems.push({ kind: 'unclosed-class', at });
      continue;
    }
    const negate = p[i] === BANG;
    const token = parseClass(p.slice(negate ? i + 1 : i, j), negate);
    if (token.kind === 'class' && !negate && token.singles.size === 0 && token.ranges.length === 0) {
      problems.push({ kind: 'empty-class', at });
    }
    i = j + 1;
  }
  return problems;
}

/** `s` as glob text that matches exactly `s`: each wildcard or `[` becomes a one-character class. */
export function escapeGlob(s: string): string {
  return s.replace(/[*?[]/g, (c) => `[${c}]`);
}

/** A pattern matching exactly `s`: `s` itself unless it has `*` or `?` (which would make it a glob), else escaped. */
export function literalPattern(s: string): string {
  return isGlob(s) ? escapeGlob(s) : s;
}
