/**
 * Format-preserving surrogates for masked secrets and AWS credentials (airut-behaviour.md items 22-23).
 *
 * The sandbox only ever holds a surrogate; the proxy swaps it for the real value on scoped hosts. A surrogate keeps
 * the shape tools check for (known prefix, length, character classes) so clients accept it, and nothing else:
 * every other character comes from the platform CSPRNG. Pure: randomness is `globalThis.crypto.getRandomValues`.
 */

/**
 * Prefixes kept verbatim so clients that sniff a token's kind (gh, npm, SDKs) treat the surrogate like the real
 * one. The longest matching prefix wins, so `sk-ant-api03-` beats `sk-ant-` beats `sk-`.
 */
export const KNOWN_TOKEN_PREFIXES: readonly string[] = [
  'github_pat_',
  'ghp_',
  'gho_',
  'ghs_',
  'ghr_',
  'ghu_',
  'glpat-',
  'gldt-',
  'glptt-',
  'glrt-',
  'npm_',
  'pypi-',
  'hf_',
  'sk-ant-api03-',
  'sk-ant-admin01-',
  'sk-ant-',
  'sk-proj-',
  'sk-svcacct-',
  'sk-',
  'sk_live_',
  'sk_test_',
  'rk_live_',
  'rk_test_',
  'xoxb-',
  'xoxp-',
  'xoxa-',
  'xoxr-',
  'xapp-',
  'dop_v1_',
  'AIza',
  'AKIA',
  'ASIA',
];

const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const LOWER = 'abcdefghijklmnopqrstuvwxyz';
const DIGITS = '0123456789';
const SEPARATORS = '-_';
const FALLBACK_CHARSET = LOWER + DIGITS;

/** Characters of an AWS secret access key (base64 alphabet). */
export const AWS_SECRET_CHARSET = UPPER + LOWER + DIGITS + '/+';
export const AWS_ACCESS_KEY_ID_LENGTH = 20;
export const AWS_SECRET_ACCESS_KEY_LENGTH = 40;
/** STS tokens vary in length (400-1200+); a fixed length keeps the real one's length out of the sandbox. */
export const AWS_SESSION_TOKEN_SURROGATE_LENGTH = 512;
const AWS_KEY_ID_PREFIXES = ['AKIA', 'ASIA', 'ABIA', 'ACCA'];
const AWS_KEY_ID_CHARSET = UPPER + DIGITS;
const ALPHANUMERIC = UPPER + LOWER + DIGITS;

/** Python's `str.isupper/islower/isdigit/isalnum`, which Airut classifies with, on one code point. */
const IS_UPPER = /^\p{Lu}$/u;
const IS_LOWER = /^\p{Ll}$/u;
const IS_DIGIT = /^\p{Nd}$/u;
const IS_ALNUM = /^[\p{L}\p{N}]$/u;

/** The longest known prefix of `real`, or '' — never the whole value, so something random always remains. */
export function tokenPrefix(real: string): string {
  let best = '';
  for (const prefix of KNOWN_TOKEN_PREFIXES) {
    if (prefix.length > best.length && real.length > prefix.length && real.startsWith(prefix)) best = prefix;
  }
  return best;
}

/** The alphabet a surrogate draws from: each character class present in `rest`, as Airut builds it. */
export function surrogateCharset(rest: string): string {
  let upper = false;
  let lower = false;
  let digit = false;
  let special = false;
  for (const ch of rest) {
    if (IS_UPPER.test(ch)) upper = true;
    if (IS_LOWER.test(ch)) lower = true;
    if (IS_DIGIT.test(ch)) digit = true;
    if (!IS_ALNUM.test(ch)) special = true;
  }
  const charset = (upper ? UPPER : '') + (lower ? LOWER : '') + (digit ? DIGITS : '') + (special ? SEPARATORS : '');
  return charset === '' ? FALLBACK_CHARSET : charset;
}

/**
 * `length` characters drawn uniformly from `charset`. Rejection sampling: a 32-bit value is used only when it falls
 * below the largest multiple of the charset size, so `value % size` has no bias toward the first characters.
 */
export function randomString(length: number, charset: string): string {
  const size = charset.length;
  if (size === 0 || size > 2 ** 16) throw new RangeError('charset must hold 1..65536 characters');
  if (!Number.isInteger(length) || length < 0) throw new RangeError('length must be a non-negative integer');
  const limit = Math.floor(2 ** 32 / size) * size;
  let out = '';
  // getRandomValues refuses more than 65536 bytes per call.
  const pool = new Uint32Array(Math.min(Math.max(length, 1), 16384));
  while (out.length < length) {
    globalThis.crypto.getRandomValues(pool);
    for (const value of pool) {
      if (value >= limit) continue;
      out += charset[value % size]!;
      if (out.length === length) break;
    }
  }
  return out;
}

function mintDifferent(real: string, mint: () => string): string {
  // Equal length makes "neither is a substring of the other" the same as "not equal"; a collision is only
  // plausible for one- or two-character values, and redrawing terminates with overwhelming probability.
  for (;;) {
    const surrogate = mint();
    if (surrogate !== real && !surrogate.includes(real) && !real.includes(surrogate)) return surrogate;
  }
}

/**
 * A fresh surrogate for a masked secret: the known prefix, then as many random characters as the rest of `real`
 * has code points, drawn from the classes present in that rest (A-Z, a-z, 0-9, and `-_` for anything else).
 * Never equal to `real`. `real` must be non-empty: an empty masked value injects nothing.
 */
export function mintSurrogate(real: string): string {
  if (real === '') throw new RangeError('an empty value has no surrogate');
  const prefix = tokenPrefix(real);
  const rest = real.slice(prefix.length);
  const charset = surrogateCharset(rest);
  const length = [...rest].length;
  return mintDifferent(real, () => prefix + randomString(length, charset));
}

export interface AwsCredentialValues {
  accessKeyId: string;
  secretAccessKey: string;
  /** Empty or absent: temporary credentials are not in use and no surrogate token is minted. */
  sessionToken?: string | null;
}

export interface AwsSurrogates {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** An access key id surrogate: 20 characters of A-Z0-9, keeping the real id's type prefix (`AKIA`, `ASIA`, …). */
export function mintAwsAccessKeyId(real: string): string {
  const prefix = AWS_KEY_ID_PREFIXES.find((p) => real.startsWith(p)) ?? '';
  return mintDifferent(real, () => prefix + randomString(AWS_ACCESS_KEY_ID_LENGTH - prefix.length, AWS_KEY_ID_CHARSET));
}

/** A secret access key surrogate: 40 characters of the base64 alphabet, like every real AWS secret key. */
export function mintAwsSecretAccessKey(real: string): string {
  return mintDifferent(real, () => randomString(AWS_SECRET_ACCESS_KEY_LENGTH, AWS_SECRET_CHARSET));
}

/** A session token surrogate: 512 alphanumerics whatever the real token's length. */
export function mintAwsSessionToken(real: string): string {
  return mintDifferent(real, () => randomString(AWS_SESSION_TOKEN_SURROGATE_LENGTH, ALPHANUMERIC));
}

/**
 * Surrogates for one AWS credential set. Fixed lengths (20, 40, 512) so the sandbox learns nothing about the real
 * values beyond the key id's type prefix (`AKIA` long-term, `ASIA` temporary), which SDKs and humans read.
 */
export function mintAwsSurrogates(real: AwsCredentialValues): AwsSurrogates {
  const out: AwsSurrogates = {
    accessKeyId: mintAwsAccessKeyId(real.accessKeyId),
    secretAccessKey: mintAwsSecretAccessKey(real.secretAccessKey),
  };
  const token = real.sessionToken;
  if (token !== undefined && token !== null && token !== '') out.sessionToken = mintAwsSessionToken(token);
  return out;
}
