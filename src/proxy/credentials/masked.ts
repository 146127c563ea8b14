import { globToRegExp, isGlob } from '../../protocol/fnmatch.js';
import { hostMatches } from '../../protocol/policy.js';
import type { MaskedCredential } from '../../protocol/proxy-config.js';
import type { CredentialResult, RequestHead } from './types.js';

/**
 * The masked-secret pass (airut-behaviour.md §4c items 115-122): on a host inside a secret's scopes, the secret's
 * surrogate is swapped for the real value in the headers the secret names; an exact-name credential header that
 * carries no surrogate is stripped so the sandbox cannot use a key of its own on that host. Targets and bodies are
 * never touched, and no header value ever reaches an event or annotation.
 */

/**
 * Placeholder passwords that mean "the token is the username" (GitHub's documented `TOKEN:x-oauth-basic`).
 * Anything else beside a username surrogate is a second credential the upstream may prefer.
 */
const PLACEHOLDER_PASSWORDS = new Set(['', 'x-oauth-basic']);

/** Bytes a header value cannot carry without splitting or truncating the request head. */
const HEADER_BREAKING = /[\r\n\0]/;

const BASIC = /^basic[ \t]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i;

interface Replacement {
  value: string;
  /** Secrets whose surrogate was swapped in this value. */
  used: Set<MaskedCredential>;
}

/** Swap every occurrence of every surrogate in one pass, so one secret's real value is never rescanned. */
function substitute(text: string, secrets: readonly MaskedCredential[]): Replacement {
  const used = new Set<MaskedCredential>();
  const present = secrets.filter((s) => s.surrogate !== '' && text.includes(s.surrogate));
  if (present.length === 0) return { value: text, used };
  // Longest first, so a surrogate that happens to contain a shorter one is taken whole.
  present.sort((a, b) => b.surrogate.length - a.surrogate.length);
  const bySurrogate = new Map(present.map((s) => [s.surrogate, s]));
  const pattern = new RegExp(present.map((s) => s.surrogate.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')).join('|'), 'g');
  // A replacer function, not a string: real values may contain `$&`, `$1`, … which String.replace would expand.
  const value = text.replace(pattern, (match) => {
    const secret = bySurrogate.get(match)!;
    used.add(secret);
    return secret.value;
  });
  return { value, used };
}

/** Strict standard base64 → UTF-8, or null. Lenient decoders let two parsers disagree about what was sent. */
function decodeBase64Utf8(encoded: string): string | null {
  if (encoded.length % 4 === 1) return null;
  const bytes = Buffer.from(encoded, 'base64');
  // Round-trip check rejects non-canonical encodings (stray bits in the last character, bad padding).
  const canonical = bytes.toString('base64');
  if (canonical.replace(/=+$/, '') !== encoded.replace(/=+$/, '')) return null;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

/**
 * Replacement inside `Basic base64(user:pass)`, re-encoded as padded standard base64 — the upstream sees exactly
 * what we decoded. A surrogate only in the username with a real-looking password is refused: servers such as
 * GitHub authenticate with the password, so `SURROGATE:ATTACKER_TOKEN` would smuggle the attacker's token.
 */
function replaceInBasic(value: string, secrets: readonly MaskedCredential[]): Replacement | null {
  const match = BASIC.exec(value);
  if (!match) return null;
  const decoded = decodeBase64Utf8(match[1]!);
  if (decoded === null) return null;
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  const user = substitute(decoded.slice(0, colon), secrets);
  const pass = substitute(decoded.slice(colon + 1), secrets);
  if (user.used.size === 0 && pass.used.size === 0) return null;
  if (pass.used.size === 0 && !PLACEHOLDER_PASSWORDS.has(pass.value.toLowerCase())) return null;
  const used = new Set([...user.used, ...pass.used]);
  const encoded = Buffer.from(`${user.value}:${pass.value}`, 'utf8').toString('base64');
  return { value: `Basic ${encoded}`, used };
}

/** Direct substring replacement first (Bearer, `token`, bare, or anywhere), then Basic credentials. */
export function replaceInHeaderValue(value: string, secrets: readonly MaskedCredential[]): Replacement | null {
  const direct = substitute(value, secrets);
  if (direct.used.size > 0) return direct;
  return replaceInBasic(value, secrets);
}

function usable(secret: MaskedCredential): boolean {
  // An empty surrogate would match every value; a value with CR/LF/NUL would inject or cut header lines.
  return secret.surrogate !== '' && secret.value !== '' && !HEADER_BREAKING.test(secret.value);
}

/** A secret in scope for this request, its header patterns compiled once (lower-case, as fnmatchIgnoreCase does). */
interface ScopedSecret {
  secret: MaskedCredential;
  usable: boolean;
  exactNames: Set<string>;
  globs: RegExp[];
}

function scoped(secret: MaskedCredential): ScopedSecret {
  const lower = secret.headers.map((p) => p.toLowerCase());
  return {
    secret,
    usable: usable(secret),
    exactNames: new Set(lower.filter((p) => !isGlob(p))),
    globs: lower.filter(isGlob).map(globToRegExp),
  };
}

function namesHeader(s: ScopedSecret, lowerName: string): boolean {
  return s.exactNames.has(lowerName) || s.globs.some((re) => re.test(lowerName));
}

/** Only an exact (non-glob) pattern makes a header the secret's own credential slot. */
function stripsForeign(s: ScopedSecret, lowerName: string): boolean {
  return !s.secret.allowForeignCredentials && s.exactNames.has(lowerName);
}

export function applyMaskedSecrets(head: RequestHead, secrets: readonly MaskedCredential[]): CredentialResult {
  const result: CredentialResult = { headers: head.headers, target: head.target, annotations: [], events: [] };
  const inScope = secrets.filter((s) => s.scopes.some((pattern) => hostMatches(head.host, pattern))).map(scoped);
  if (inScope.length === 0) return result;

  const cleartext = head.scheme === 'http';
  const where = `${head.method} ${cleartext ? 'http' : 'https'}://${head.host}${head.target}`;
  // Output slot per input header: the pair to forward (possibly rewritten), or null to drop it.
  const output: Array<[string, string] | null> = head.headers.map(([name, value]) => [name, value]);
  // Entry indexes per lower-case name, in wire order: case variants of one name are one header.
  const byName = new Map<string, number[]>();
  head.headers.forEach(([name], index) => {
    const lower = name.toLowerCase();
    const entries = byName.get(lower);
    if (entries) entries.push(index);
    else byName.set(lower, [index]);
  });
  let masked = 0;
  let dropped = 0;
  let changed = false;

  for (const [lowerName, entries] of byName) {
    const applicable = inScope.filter((s) => namesHeader(s, lowerName));
    if (applicable.length === 0) continue;
    // An unusable secret never injects, but still strips: a broken config must not open the host to foreign keys.
    const injectable = applicable.filter((s) => s.usable).map((s) => s.secret);

    let kept: { index: number; replacement: Replacement } | undefined;
    for (const index of entries) {
      const replacement = replaceInHeaderValue(head.headers[index]![1], injectable);
      if (replacement) {
        kept = { index, replacement };
        break;
      }
    }

    if (kept) {
      let forwarded = kept.replacement.value;
      if (cleartext) {
        // Recognised, so duplicates still collapse and nothing is stripped as foreign, but the real value would
        // cross the network unencrypted: the surrogate travels on, useless.
        forwarded = head.headers[kept.index]![1];
        result.events.push(
          `NOT REPLACED masked secret in '${lowerName}' for ${where} (real values are only sent over HTTPS)`,
        );
      } else {
        masked += kept.replacement.used.size;
      }
      // One credential per header name reaches the upstream: whichever entry carried a surrogate, every other
      // entry of that name (an attacker's token placed before or after it) is dropped, and the survivor sits where
      // the first entry was so ordering cannot be used to pick which value a server reads.
      for (const index of entries) output[index] = null;
      output[entries[0]!] = [head.headers[kept.index]![0], forwarded];
      changed = true;
      if (entries.length > 1) {
        result.events.push(
          `COLLAPSED ${entries.length} duplicate '${lowerName}' headers in ${where} (duplicate credential headers removed)`,
        );
      }
      continue;
    }

    if (applicable.some((s) => stripsForeign(s, lowerName))) {
      for (const index of entries) output[index] = null;
      dropped += 1;
      changed = true;
      result.events.push(`STRIPPED header '${lowerName}' from ${where} (foreign credential blocked)`);
    }
  }

  if (!changed) return result;
  result.headers = output.filter((pair): pair is [string, string] => pair !== null);
  if (masked > 0) result.annotations.push(`masked: ${masked}`);
  if (dropped > 0) result.annotations.push(`dropped: ${dropped}`);
  return result;
}
