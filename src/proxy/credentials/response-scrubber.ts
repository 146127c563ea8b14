import { Transform, type TransformCallback } from 'node:stream';

/**
 * Mapping real values back to surrogates in responses (issue 13, finding 4). A host that received a real value may
 * reflect the request — a debug endpoint, an error page, an httpbin-like API, a redirect that copies a header — and
 * hand the sandbox the credential the proxy swapped in. Every response from such a host passes a scrubber that
 * replaces each real value, in each form the request carried it, with what the sandbox itself sent there.
 *
 * Matching is on bytes, leftmost first and, at one position, longest first, so needles that overlap or are prefixes
 * of one another (a Basic blob and the token inside it, two secrets sharing a prefix) give one answer whatever the
 * chunking. A body streams through with a tail of at most (longest needle − 1) bytes held back across chunk
 * boundaries: memory is bounded by one chunk plus that tail, never by the body.
 */

/** A real value as the proxy wrote it upstream, and what the sandbox wrote in its place. */
export interface InjectedValue {
  sent: string;
  sandbox: string;
}

/**
 * The forms of one real value worth mapping back besides the raw one: percent-encoded (a query, a form body, a
 * `Location` or cookie that copies it) and with `/` escaped as JSON encoders such as PHP's write it. Each maps to
 * the same form of the sandbox's value, so what the sandbox reads back is what it would have read had its own
 * value gone upstream.
 */
export function injectedForms(sent: string, sandbox: string): InjectedValue[] {
  const forms: InjectedValue[] = [{ sent, sandbox }];
  const percent = encodeURIComponent(sent);
  if (percent !== sent) forms.push({ sent: percent, sandbox: encodeURIComponent(sandbox) });
  if (sent.includes('/')) forms.push({ sent: sent.replaceAll('/', '\\/'), sandbox: sandbox.replaceAll('/', '\\/') });
  return forms;
}

interface Needle {
  bytes: Buffer;
  replacement: Buffer;
}

/** Latin-1 when every character fits (how Node writes header values), else only UTF-8. */
function latin1(s: string): Buffer | null {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return null;
  return Buffer.from(s, 'latin1');
}

function compile(values: readonly InjectedValue[]): Needle[] {
  const needles: Needle[] = [];
  const seen = new Set<string>();
  const add = (bytes: Buffer | null, replacement: Buffer) => {
    if (bytes === null || bytes.length === 0 || bytes.equals(replacement)) return;
    const key = bytes.toString('hex');
    // The same real value injected twice maps to whichever surrogate came first: one answer per needle.
    if (seen.has(key)) return;
    seen.add(key);
    needles.push({ bytes, replacement });
  };
  for (const { sent, sandbox } of values) {
    // A non-ASCII value is written as UTF-8 in a body or Basic blob, as Latin-1 by Node in a header value.
    add(Buffer.from(sent, 'utf8'), Buffer.from(sandbox, 'utf8'));
    add(latin1(sent), latin1(sandbox) ?? Buffer.from(sandbox, 'utf8'));
  }
  return needles;
}

/** Whether some needle longer than the rest of `buf` from `at` begins with exactly that rest. */
function couldStartAt(needles: readonly Needle[], buf: Buffer, at: number): boolean {
  const rest = buf.length - at;
  return needles.some((n) => n.bytes.length > rest && buf.compare(n.bytes, 0, rest, at) === 0);
}

/**
 * Scans `buf` from the start and appends the scrubbed output to `out`. Unless `final`, output stops at the first
 * position where a needle may begin but runs past the end of `buf`: the caller carries the bytes from there into
 * the next chunk. Only genuine needle prefixes are held back, so a streamed response (server-sent events, a
 * progress bar) is not delayed by the tail. Returns where that unscanned rest begins and how many replacements
 * were made.
 */
function scan(needles: readonly Needle[], longest: number, buf: Buffer, final: boolean, out: Buffer[]) {
  let pos = 0;
  let count = 0;
  // Before this position every needle lies wholly inside `buf`: indexOf alone decides whether one matches there.
  const undecided = buf.length - (longest - 1);
  // Next occurrence at or after `pos` per needle (-1: none left in this buffer); searched again only once passed.
  const next = needles.map(() => -2);
  const stop = (at: number) => {
    if (at > pos) out.push(buf.subarray(pos, at));
    return { rest: at, count };
  };
  for (;;) {
    let at = -1;
    for (let i = 0; i < needles.length; i++) {
      if (next[i] !== -1 && next[i]! < pos) next[i] = buf.indexOf(needles[i]!.bytes, pos);
      if (next[i]! >= 0 && (at < 0 || next[i]! < at)) at = next[i]!;
    }
    const end = at < 0 ? buf.length : at;
    if (!final) {
      // An earlier position whose needle would run past the end wins over a full match later on (leftmost first).
      for (let p = Math.max(pos, undecided); p < end; p++) if (couldStartAt(needles, buf, p)) return stop(p);
    }
    if (at < 0) return stop(buf.length);
    // A longer needle may still match here once more bytes arrive (longest first).
    if (!final && couldStartAt(needles, buf, at)) return stop(at);
    let chosen = needles[0]!;
    let found = false;
    for (let i = 0; i < needles.length; i++) {
      if (next[i] === at && (!found || needles[i]!.bytes.length > chosen.bytes.length)) {
        chosen = needles[i]!;
        found = true;
      }
    }
    if (at > pos) out.push(buf.subarray(pos, at));
    out.push(chosen.replacement);
    pos = at + chosen.bytes.length;
    count++;
  }
}

function joined(parts: Buffer[]): Buffer {
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/** A body stream with every real value mapped back; `replacements` counts them once the stream has ended. */
export class ScrubbingTransform extends Transform {
  replacements = 0;
  private tail: Buffer = Buffer.alloc(0);

  constructor(
    private readonly needles: readonly Needle[],
    private readonly longest: number,
  ) {
    super();
  }

  /** Bytes held back at the last chunk boundary: never more than the longest needle minus one. */
  get heldBytes(): number {
    return this.tail.length;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const buf = this.tail.length === 0 ? chunk : Buffer.concat([this.tail, chunk]);
    const out: Buffer[] = [];
    const { rest, count } = scan(this.needles, this.longest, buf, false, out);
    this.replacements += count;
    // A copy, so the held-back tail does not pin the whole chunk it came from.
    this.tail = Buffer.from(buf.subarray(rest));
    if (out.length > 0) this.push(joined(out));
    callback();
  }

  override _flush(callback: TransformCallback): void {
    const out: Buffer[] = [];
    this.replacements += scan(this.needles, this.longest, this.tail, true, out).count;
    this.tail = Buffer.alloc(0);
    const bytes = joined(out);
    if (bytes.length > 0) this.push(bytes);
    callback();
  }
}

export interface ResponseScrubber {
  /** Whether every replacement has its needle's byte length, so a body keeps the length the upstream announced. */
  readonly lengthPreserving: boolean;
  /** A header name, value or reason phrase (Latin-1, as Node reads them), scrubbed, with its replacement count. */
  text(value: string): { text: string; replacements: number };
  /** A fresh transform for one body. */
  body(): ScrubbingTransform;
}

/** The scrubber for one response, or null when there is nothing to map back (every form equal to the sandbox's). */
export function responseScrubber(values: readonly InjectedValue[]): ResponseScrubber | null {
  const needles = compile(values);
  if (needles.length === 0) return null;
  const longest = Math.max(...needles.map((n) => n.bytes.length));
  return {
    lengthPreserving: needles.every((n) => n.bytes.length === n.replacement.length),
    text(value) {
      const out: Buffer[] = [];
      const { count } = scan(needles, longest, Buffer.from(value, 'latin1'), true, out);
      return count === 0
        ? { text: value, replacements: 0 }
        : { text: joined(out).toString('latin1'), replacements: count };
    },
    body: () => new ScrubbingTransform(needles, longest),
  };
}

/**
 * The request headers with `Accept-Encoding: identity` in place of whatever the sandbox asked for: a response the
 * scrubber can read as it streams, without decoding and re-encoding it. Every case variant of the name goes; the
 * new header takes the first one's place.
 */
export function acceptingIdentity(headers: ReadonlyArray<[string, string]>): Array<[string, string]> {
  const at = headers.findIndex(([n]) => n.toLowerCase() === 'accept-encoding');
  const out = headers.filter(([n]) => n.toLowerCase() !== 'accept-encoding');
  out.splice(at < 0 ? out.length : at, 0, ['Accept-Encoding', 'identity']);
  return out;
}
