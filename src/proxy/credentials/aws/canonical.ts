import { createHash } from 'node:crypto';

/**
 * The pieces of an AWS SigV4/SigV4A canonical request, rebuilt from a request as it arrived on the wire. AWS's
 * signers disagree on a few details (S3 signs the wire path as it is, other services normalise it and encode it a
 * second time; some clients sort repeated header values), so the path and query builders take the variant as an
 * argument and the caller decides which one the client used (resign.ts tries them against the client's signature).
 */

export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

export function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** RFC 3986 unreserved bytes, the only ones AWS leaves unencoded. */
function isUnreserved(byte: number): boolean {
  return (
    (byte >= 0x41 && byte <= 0x5a) || // A-Z
    (byte >= 0x61 && byte <= 0x7a) || // a-z
    (byte >= 0x30 && byte <= 0x39) || // 0-9
    byte === 0x2d || // -
    byte === 0x2e || // .
    byte === 0x5f || // _
    byte === 0x7e // ~
  );
}

/** AWS URI encoding: every byte but the unreserved ones becomes `%XX` (upper-case hex); `/` kept in paths. */
export function awsUriEncode(input: string | Buffer, keepSlash: boolean): string {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  let out = '';
  for (const byte of bytes) {
    if (isUnreserved(byte) || (keepSlash && byte === 0x2f)) out += String.fromCharCode(byte);
    else out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

const HEX = /^[0-9A-Fa-f]{2}$/;

/** Percent-decoding to bytes; a `%` not followed by two hex digits stays literal, as every AWS signer treats it. */
export function percentDecode(input: string, plusAsSpace = false): Buffer {
  const parts: Buffer[] = [];
  let literal = '';
  const flush = (): void => {
    if (literal !== '') parts.push(Buffer.from(literal, 'utf8'));
    literal = '';
  };
  for (let i = 0; i < input.length; i++) {
    const ch = input[i]!;
    const hex = input.slice(i + 1, i + 3);
    if (ch === '%' && HEX.test(hex)) {
      flush();
      parts.push(Buffer.from([parseInt(hex, 16)]));
      i += 2;
    } else if (ch === '+' && plusAsSpace) {
      literal += ' ';
    } else {
      literal += ch;
    }
  }
  flush();
  return Buffer.concat(parts);
}

/**
 * How the client turned its path into the canonical URI.
 * - `as-is`: the wire path unchanged (S3 and every SDK's S3 signer).
 * - `reencoded`: decoded once, encoded once (Airut's S3 rule; differs from `as-is` only for unusual escapes).
 * - `double-normalized`: dot segments and empty segments removed, then the wire path encoded again
 *   (every other service; AWS's default).
 * - `double`: the wire path encoded again without normalisation (signers configured not to normalise).
 */
export type PathStyle = 'as-is' | 'reencoded' | 'double-normalized' | 'double';

/** RFC 3986 dot-segment removal plus AWS's removal of empty segments; a trailing slash survives. */
export function normalizePath(path: string): string {
  const kept: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') kept.pop();
    else kept.push(segment);
  }
  const trailing = path.endsWith('/') && kept.length > 0 ? '/' : '';
  return '/' + kept.join('/') + trailing;
}

export function canonicalUri(rawPath: string, style: PathStyle): string {
  const path = rawPath === '' ? '/' : rawPath;
  switch (style) {
    case 'as-is':
      return path;
    case 'reencoded':
      return awsUriEncode(percentDecode(path), true);
    case 'double-normalized':
      return awsUriEncode(normalizePath(path), true);
    case 'double':
      return awsUriEncode(path, true);
  }
}

/** One `name=value` pair of a raw query string, still encoded as on the wire. */
export interface RawQueryParam {
  name: string;
  value: string;
  /** Whether the wire form had an `=`; `a` and `a=` canonicalise the same but are rewritten as they came. */
  hasEquals: boolean;
}

export function parseRawQuery(query: string): RawQueryParam[] {
  if (query === '') return [];
  return query
    .split('&')
    .filter((part) => part !== '')
    .map((part) => {
      const eq = part.indexOf('=');
      return eq < 0
        ? { name: part, value: '', hasEquals: false }
        : { name: part.slice(0, eq), value: part.slice(eq + 1), hasEquals: true };
    });
}

export interface QueryOptions {
  /** Whether the client read `+` as a space (HTML forms, Python's parse_qsl) or as a literal plus (AWS). */
  plusAsSpace: boolean;
  /** Parameters left out of the canonical query, by exact wire name (X-Amz-Signature for presigned URLs). */
  exclude?: (name: string) => boolean;
}

/** Decode each name and value once, re-encode the AWS way, sort by name then value. */
export function canonicalQuery(params: readonly RawQueryParam[], options: QueryOptions): string {
  const encoded = params
    .filter((p) => !options.exclude?.(p.name))
    .map((p) => [
      awsUriEncode(percentDecode(p.name, options.plusAsSpace), false),
      awsUriEncode(percentDecode(p.value, options.plusAsSpace), false),
    ]);
  encoded.sort(([an, av], [bn, bv]) => compareCodeUnits(an!, bn!) || compareCodeUnits(av!, bv!));
  return encoded.map(([n, v]) => `${n}=${v}`).join('&');
}

/** Byte order on the ASCII strings AWS encoding produces; localeCompare would not be. */
function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** aws-c-auth's isspace set: folded to one space inside a value, trimmed at its ends. */
const SPACE_RUN = /[ \t\n\v\f\r]+/g;

export function canonicalHeaderValue(value: string): string {
  return value.replace(SPACE_RUN, ' ').trim();
}

export interface HeaderOptions {
  /** Repeated values in wire order (AWS's test suite) or sorted (Airut; docs/aws-signing.md#learning-the-clients-variant). */
  sortDuplicates: boolean;
}

/**
 * The canonical header block (each line ends in `\n`) for the signed names, which must be lower-case and sorted.
 * A signed header the request lacks gives `name:` — the client must have signed it empty.
 */
export function canonicalHeaders(
  headers: ReadonlyArray<readonly [string, string]>,
  signedHeaders: readonly string[],
  options: HeaderOptions,
): string {
  const byName = new Map<string, string[]>();
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    let values = byName.get(lower);
    if (!values) byName.set(lower, (values = []));
    values.push(canonicalHeaderValue(value));
  }
  let block = '';
  for (const name of signedHeaders) {
    const values = [...(byName.get(name) ?? [])];
    if (options.sortDuplicates) values.sort(compareCodeUnits);
    block += `${name}:${values.join(',')}\n`;
  }
  return block;
}

export interface CanonicalRequestParts {
  method: string;
  uri: string;
  query: string;
  headers: string;
  signedHeaders: readonly string[];
  payloadHash: string;
}

export function canonicalRequest(parts: CanonicalRequestParts): string {
  return [parts.method, parts.uri, parts.query, parts.headers, parts.signedHeaders.join(';'), parts.payloadHash].join(
    '\n',
  );
}

/** Splits an origin-form target at its first `?`; a fragment never reaches a proxy. */
export function splitTarget(target: string): { path: string; query: string } {
  const q = target.indexOf('?');
  return q < 0 ? { path: target, query: '' } : { path: target.slice(0, q), query: target.slice(q + 1) };
}
