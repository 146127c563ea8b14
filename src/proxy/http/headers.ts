/**
 * Header handling between the sandbox and upstream. Headers travel as `[name, value]` pairs in wire order with
 * their original case and duplicates, because credential passes and AWS signatures depend on exactly that.
 */

export type HeaderPairs = Array<[string, string]>;

/** RFC 9110 §7.6.1 connection-specific headers, plus the de-facto ones. They describe one hop, never the next. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Node's `rawHeaders` (flat name, value, name, value…) as pairs. */
export function pairsFromRaw(raw: readonly string[]): HeaderPairs {
  const pairs: HeaderPairs = [];
  for (let i = 0; i + 1 < raw.length; i += 2) pairs.push([raw[i]!, raw[i + 1]!]);
  return pairs;
}

export function flatten(pairs: HeaderPairs): string[] {
  const flat: string[] = [];
  for (const [name, value] of pairs) flat.push(name, value);
  return flat;
}

/** Every value of a header, case-insensitively, in wire order. */
export function headerValues(pairs: HeaderPairs, name: string): string[] {
  const lower = name.toLowerCase();
  return pairs.filter(([n]) => n.toLowerCase() === lower).map(([, v]) => v);
}

/**
 * Drops hop-by-hop headers and every header the `Connection` header names (a client could otherwise mark
 * `Authorization` as hop-by-hop to make a conforming proxy drop it after the credential pass ran).
 * `keep` lets the WebSocket path retain `Upgrade`/`Connection`.
 */
export function withoutHopByHop(pairs: HeaderPairs, keep: readonly string[] = []): HeaderPairs {
  const named = new Set<string>();
  for (const value of headerValues(pairs, 'connection')) {
    for (const token of value.split(',')) {
      const t = token.trim().toLowerCase();
      if (t !== '') named.add(t);
    }
  }
  const kept = new Set(keep.map((k) => k.toLowerCase()));
  return pairs.filter(([n]) => {
    const lower = n.toLowerCase();
    if (kept.has(lower)) return true;
    return !HOP_BY_HOP.has(lower) && !named.has(lower);
  });
}

/** Replace every `name` header with one value (or remove them all when value is null). */
export function setHeader(pairs: HeaderPairs, name: string, value: string | null): HeaderPairs {
  const lower = name.toLowerCase();
  const out = pairs.filter(([n]) => n.toLowerCase() !== lower);
  if (value !== null) out.push([name, value]);
  return out;
}

/** Replace every `name` header with one `value` where the first of them stood (appended when there was none). */
export function setHeaderInPlace(pairs: HeaderPairs, name: string, value: string): HeaderPairs {
  const lower = name.toLowerCase();
  const at = pairs.findIndex(([n]) => n.toLowerCase() === lower);
  if (at < 0) return [...pairs, [name, value]];
  const out = pairs.filter(([n], i) => i === at || n.toLowerCase() !== lower);
  out[at] = [pairs[at]![0], value];
  return out;
}

/** Whether a request announces a body (RFC 9112 §6.3: Transfer-Encoding or a non-zero Content-Length). */
export function hasRequestBody(headers: { 'content-length'?: string; 'transfer-encoding'?: string }): boolean {
  if (headers['transfer-encoding'] !== undefined) return true;
  const length = headers['content-length'];
  return length !== undefined && length !== '0';
}
