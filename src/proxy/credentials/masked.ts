import { globMatcher, isGlob, type GlobMatcher } from '../../protocol/fnmatch.js';
import { endpointMatches } from '../../protocol/policy.js';
import type { MaskedCredential } from '../../protocol/proxy-wire.js';
import { injectedForms, type InjectedValue } from './response-scrubber.js';
import type { CredentialResult, RequestHead } from './types.js';

/**
 * The masked-secret pass (docs/secrets.md#where-the-surrogate-is-replaced): on a host inside a secret's scopes, the secret's
 * surrogate is swapped for the real value in the headers the secret names; an exact-name credential header that
 * carries no surrogate is stripped so the sandbox cannot use a key of its own on that host. Targets and bodies are
 * never touched, and no header value ever reaches an event or annotation.
 *
 * A surrogate is only swapped when the header value is exactly one credential — the surrogate alone,
 * `<scheme> <surrogate>`, or Basic credentials whose password (or, beside a placeholder password, user name) is the
 * surrogate. Substring replacement would keep whatever the sandbox wrote around the surrogate, so
 * `Bearer ATTACKER, Bearer S` would reach the upstream as `Bearer ATTACKER, Bearer REAL` and a server that reads the
 * first credential of a list would authenticate the attacker.
 */

/**
 * Placeholder passwords that mean "the token is the username" (GitHub's documented `TOKEN:x-oauth-basic`).
 * Anything else beside a username surrogate is a second credential the upstream may prefer.
 */
const PLACEHOLDER_PASSWORDS = new Set(['', 'x-oauth-basic']);

/** Bytes a header value cannot carry without splitting or truncating the request head. */
const HEADER_BREAKING = /[\r\n\0]/;

/**
 * An auth-scheme word as clients send one (`Bearer`, `token`, `Basic`, `Bot`, `SCRAM-SHA-256`): letters, then
 * optional hyphen-joined alphanumeric parts. Narrower than RFC 9110's token on purpose: a word with `_`, `.`, `/`,
 * `=` or a leading digit looks like a credential, and a credential in the scheme position is a second credential.
 */
const SCHEME_WORD = /^[A-Za-z]+(?:-[A-Za-z0-9]+)*$/;
const MAX_SCHEME_LENGTH = 32;

/** HTTP's optional whitespace: spaces and tabs, nothing else. */
const OWS_RUN = /[ \t]+/;

const BASIC = /^basic[ \t]+([A-Za-z0-9+/]+={0,2})$/i;

interface Replacement {
  value: string;
  /** Secrets whose surrogate was swapped in this value. */
  used: Set<MaskedCredential>;
  /** Basic credentials: the base64 forwarded, and the base64 exactly as the sandbox wrote it. */
  basic?: { sent: string; sandbox: string };
}

/** What one header entry holds, as far as the masked pass is concerned. */
export type CredentialReading =
  /** Exactly one credential, made of surrogates: forwarded with the real values, in canonical form. */
  | { kind: 'single'; replacement: Replacement }
  /** A surrogate with anything else beside it: never partially replaced. */
  | { kind: 'mixed' }
  /** No surrogate of the secrets that may be swapped here. */
  | { kind: 'none' };

function trimOws(value: string): string {
  return value.replace(/^[ \t]+|[ \t]+$/g, '');
}

function secretWithSurrogate(text: string, secrets: readonly MaskedCredential[]): MaskedCredential | undefined {
  return secrets.find((s) => s.surrogate !== '' && s.surrogate === text);
}

function holdsSurrogate(text: string, secrets: readonly MaskedCredential[]): boolean {
  return secrets.some((s) => s.surrogate !== '' && text.includes(s.surrogate));
}

function isSchemeWord(word: string, every: readonly MaskedCredential[]): boolean {
  // A surrogate as the scheme (`S S`) is the surrogate twice, not a scheme.
  return word.length <= MAX_SCHEME_LENGTH && SCHEME_WORD.test(word) && !holdsSurrogate(word, every);
}

/** The surrogate alone, or `<scheme> <surrogate>`, with only whitespace around them; re-emitted canonically. */
function readDirect(
  value: string,
  injectable: readonly MaskedCredential[],
  every: readonly MaskedCredential[],
): Replacement | null {
  const trimmed = trimOws(value);
  const bare = secretWithSurrogate(trimmed, injectable);
  if (bare) return { value: bare.value, used: new Set([bare]) };
  const gap = OWS_RUN.exec(trimmed);
  if (!gap) return null;
  const scheme = trimmed.slice(0, gap.index);
  const secret = secretWithSurrogate(trimmed.slice(gap.index + gap[0].length), injectable);
  if (!secret || !isSchemeWord(scheme, every)) return null;
  return { value: `${scheme} ${secret.value}`, used: new Set([secret]) };
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
 * `Basic base64(user:pass)`, re-encoded as padded standard base64 so the upstream decodes exactly what we checked;
 * null when the value is not decodable Basic credentials. The password must be a surrogate in full, or — for
 * GitHub's `TOKEN:x-oauth-basic` form — the user name must be and the password a placeholder. A surrogate only in
 * the user name beside a real-looking password is refused: servers such as GitHub authenticate with the password,
 * so `SURROGATE:ATTACKER_TOKEN` would smuggle the attacker's token.
 */
function readBasic(value: string, injectable: readonly MaskedCredential[]): CredentialReading | null {
  const match = BASIC.exec(trimOws(value));
  if (!match) return null;
  const decoded = decodeBase64Utf8(match[1]!);
  if (decoded === null) return null;
  const colon = decoded.indexOf(':');
  if (colon < 0) return holdsSurrogate(decoded, injectable) ? { kind: 'mixed' } : null;
  const user = decoded.slice(0, colon);
  const pass = decoded.slice(colon + 1);
  const userSecret = secretWithSurrogate(user, injectable);
  const passSecret = secretWithSurrogate(pass, injectable);
  if ((!userSecret && holdsSurrogate(user, injectable)) || (!passSecret && holdsSurrogate(pass, injectable))) {
    return { kind: 'mixed' };
  }
  if (!userSecret && !passSecret) return null;
  if (!passSecret && !PLACEHOLDER_PASSWORDS.has(pass.toLowerCase())) return { kind: 'mixed' };
  const used = new Set([userSecret, passSecret].filter((s): s is MaskedCredential => s !== undefined));
  const userPass = `${userSecret?.value ?? user}:${passSecret?.value ?? pass}`;
  const encoded = Buffer.from(userPass, 'utf8').toString('base64');
  return {
    kind: 'single',
    replacement: { value: `Basic ${encoded}`, used, basic: { sent: encoded, sandbox: match[1]! } },
  };
}

/**
 * Classify one header value against the secrets that may be swapped into it (`injectable`). `every` is every
 * configured secret: none of their surrogates may stand in the scheme position.
 */
export function readCredential(
  value: string,
  injectable: readonly MaskedCredential[],
  every: readonly MaskedCredential[] = injectable,
): CredentialReading {
  const direct = readDirect(value, injectable, every);
  if (direct) return { kind: 'single', replacement: direct };
  const basic = readBasic(value, injectable);
  if (basic) return basic;
  return holdsSurrogate(value, injectable) ? { kind: 'mixed' } : { kind: 'none' };
}

/**
 * What a response could reflect of one swapped header: each real value (raw and encoded) and, for Basic
 * credentials, the whole base64 blob — padded as sent, and unpadded in case the upstream trims it.
 */
function injectedValues(replacement: Replacement): InjectedValue[] {
  const values = [...replacement.used].flatMap((s) => injectedForms(s.value, s.surrogate));
  const blob = replacement.basic;
  if (blob) {
    values.push(blob);
    const unpadded = blob.sent.replace(/=+$/, '');
    if (unpadded !== blob.sent) values.push({ sent: unpadded, sandbox: blob.sandbox.replace(/=+$/, '') });
  }
  return values;
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
  globs: GlobMatcher[];
}

function scoped(secret: MaskedCredential): ScopedSecret {
  const lower = secret.headers.map((p) => p.toLowerCase());
  return {
    secret,
    usable: usable(secret),
    exactNames: new Set(lower.filter((p) => !isGlob(p))),
    globs: lower.filter(isGlob).map(globMatcher),
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
  const scheme = head.scheme ?? 'https';
  const inScope = secrets
    .filter((s) => s.scopes.some((pattern) => endpointMatches(head.host, head.port, scheme, pattern)))
    .map(scoped);
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
  const injected: InjectedValue[] = [];

  const strip = (lowerName: string, entries: readonly number[], reason: string): void => {
    for (const index of entries) output[index] = null;
    dropped += 1;
    changed = true;
    result.events.push(`STRIPPED header '${lowerName}' from ${where} (${reason})`);
  };

  for (const [lowerName, entries] of byName) {
    const applicable = inScope.filter((s) => namesHeader(s, lowerName));
    if (applicable.length === 0) continue;
    // An unusable secret never injects, but still strips: a broken config must not open the host to foreign keys.
    const injectable = applicable.filter((s) => s.usable).map((s) => s.secret);
    const strips = applicable.some((s) => stripsForeign(s, lowerName));
    const readings = entries.map((index) => readCredential(head.headers[index]![1], injectable, secrets));

    if (readings.some((r) => r.kind === 'mixed')) {
      // An entry that dresses the surrogate up with other content is an attempt to smuggle a second credential:
      // on the secret's own header nothing of that name goes through, even beside a clean entry.
      if (strips) {
        strip(lowerName, entries, 'foreign credential blocked: surrogate with other content');
        continue;
      }
      if (!readings.some((r) => r.kind === 'single')) {
        result.events.push(
          `NOT REPLACED masked secret in '${lowerName}' for ${where} (surrogate with other content; only a single credential is replaced)`,
        );
        continue;
      }
    }

    const keptAt = readings.findIndex((r) => r.kind === 'single');
    const kept = readings[keptAt];
    if (kept?.kind === 'single') {
      const index = entries[keptAt]!;
      let forwarded = kept.replacement.value;
      if (cleartext) {
        // Recognised, so duplicates still collapse and nothing is stripped as foreign, but the real value would
        // cross the network unencrypted: the surrogate travels on, useless.
        forwarded = head.headers[index]![1];
        result.events.push(
          `NOT REPLACED masked secret in '${lowerName}' for ${where} (real values are only sent over HTTPS)`,
        );
      } else {
        masked += kept.replacement.used.size;
        injected.push(...injectedValues(kept.replacement));
      }
      // One credential per header name reaches the upstream: whichever entry carried a surrogate, every other
      // entry of that name (an attacker's token placed before or after it) is dropped, and the survivor sits where
      // the first entry was so ordering cannot be used to pick which value a server reads.
      for (const other of entries) output[other] = null;
      output[entries[0]!] = [head.headers[index]![0], forwarded];
      changed = true;
      if (entries.length > 1) {
        result.events.push(
          `COLLAPSED ${entries.length} duplicate '${lowerName}' headers in ${where} (duplicate credential headers removed)`,
        );
      }
      continue;
    }

    if (strips) strip(lowerName, entries, 'foreign credential blocked');
  }

  if (!changed) return result;
  result.headers = output.filter((pair): pair is [string, string] => pair !== null);
  if (injected.length > 0) result.injected = injected;
  if (masked > 0) result.annotations.push(`masked: ${masked}`);
  if (dropped > 0) result.annotations.push(`dropped: ${dropped}`);
  return result;
}
