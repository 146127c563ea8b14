import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { EMPTY_SHA256, canonicalHeaderValue, sha256Hex } from './canonical.js';
import type { SigningAlgorithm } from './authorization.js';
import { SIGV4_ALGORITHM } from './sigv4.js';
import { SIGV4A_PADDING, trimSigV4APadding } from './sigv4a.js';

/**
 * Re-signs an `aws-chunked` body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD, the ECDSA variant and their -TRAILER forms)
 * as it streams. Each chunk's signature precedes its data and covers the data's hash, so one chunk is held until it
 * is complete — never more, and never more than maxChunkBytes; the body as a whole is never buffered.
 *
 * Wire format: `hex;chunk-signature=SIG\r\n DATA \r\n` … `0;chunk-signature=SIG\r\n`, then either `\r\n` or, in
 * trailer mode, `name:value\r\n` lines, `x-amz-trailer-signature:SIG\r\n` and `\r\n`.
 *
 * Signatures keep the width the client gave them, so Content-Length stays right: SigV4's are always 64 hex digits;
 * SigV4A's DER signatures vary in length and AWS pads them with `*` to 144 characters.
 */

export interface ChunkSigningContext {
  algorithm: SigningAlgorithm;
  amzDate: string;
  scope: string;
  /** The re-signed request signature: the first chunk chains from it. */
  seedSignature: string;
  trailer: boolean;
  /** Signs with the real key; `width` is the client's signature width, which the result must not exceed. */
  sign(stringToSign: string, width: number): string;
}

export interface ChunkResignerOptions {
  maxChunkBytes: number;
}

/** A chunk header or trailer line longer than this is not aws-chunked framing. */
const MAX_LINE = 8192;
const CRLF = Buffer.from('\r\n');
const CHUNK_HEADER = /^([0-9a-fA-F]{1,16});chunk-signature=([0-9a-fA-F]+\**)$/;
const TRAILER_SIGNATURE = /^x-amz-trailer-signature:[ \t]*([0-9a-fA-F]+\**)[ \t]*$/i;

type State = 'chunk-header' | 'chunk-data' | 'chunk-crlf' | 'final-crlf' | 'trailer-line' | 'passthrough';

export class AwsChunkResigner extends Transform {
  private state: State = 'chunk-header';
  /** Unconsumed bytes of a line or CRLF that straddles writes; at most MAX_LINE + a few bytes. */
  private carry: Buffer = Buffer.alloc(0);
  private previous: string;
  private chunkLine = '';
  private chunkSignatureWidth = 0;
  private remaining = 0;
  private held: Buffer[] = [];
  private hash = createHash('sha256');
  private readonly trailerLines: string[] = [];
  /** Why re-signing stopped and the rest passed through unchanged, if it did (docs/aws-signing.md#streaming-uploads). */
  failure: string | undefined;

  constructor(
    private readonly context: ChunkSigningContext,
    private readonly options: ChunkResignerOptions,
  ) {
    super();
    this.previous = trimSigV4APadding(context.seedSignature);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    try {
      this.consume(this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk);
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    if (this.state !== 'passthrough') {
      // A body that ends mid-frame is the client's to explain; forward what we hold so nothing is lost silently.
      this.giveUp(`body ended inside aws-chunked framing (${this.state})`, Buffer.alloc(0));
    }
    if (this.carry.length > 0) this.push(this.carry);
    this.carry = Buffer.alloc(0);
    done();
  }

  private consume(input: Buffer): void {
    let at = 0;
    this.carry = Buffer.alloc(0);
    while (at < input.length) {
      switch (this.state) {
        case 'passthrough':
          this.push(input.subarray(at));
          return;
        case 'chunk-data': {
          const take = Math.min(this.remaining, input.length - at);
          const piece = input.subarray(at, at + take);
          this.hash.update(piece);
          this.held.push(piece);
          this.remaining -= take;
          at += take;
          if (this.remaining === 0) this.state = 'chunk-crlf';
          break;
        }
        case 'chunk-crlf':
        case 'final-crlf': {
          if (input.length - at < 2) {
            this.carry = Buffer.from(input.subarray(at));
            return;
          }
          if (input[at] !== 0x0d || input[at + 1] !== 0x0a) {
            this.giveUp('chunk data not followed by CRLF', input.subarray(at));
            return;
          }
          at += 2;
          if (this.state === 'chunk-crlf') this.emitChunk();
          else {
            this.push(CRLF);
            this.state = 'passthrough';
          }
          break;
        }
        case 'chunk-header':
        case 'trailer-line': {
          const end = input.indexOf(CRLF, at);
          if (end < 0) {
            if (input.length - at > MAX_LINE) {
              this.giveUp('aws-chunked line too long', input.subarray(at));
              return;
            }
            this.carry = Buffer.from(input.subarray(at));
            return;
          }
          const line = input.subarray(at, end).toString('latin1');
          at = end + 2;
          if (this.state === 'chunk-header') {
            if (!this.startChunk(line)) {
              this.giveUp('not an aws-chunked chunk header', input.subarray(at - line.length - 2));
              return;
            }
          } else this.trailerLine(line);
          break;
        }
      }
    }
  }

  private startChunk(line: string): boolean {
    const match = CHUNK_HEADER.exec(line);
    if (!match) return false;
    const size = parseInt(match[1]!, 16);
    if (size > this.options.maxChunkBytes) return false;
    this.chunkLine = line;
    this.chunkSignatureWidth = match[2]!.length;
    this.remaining = size;
    this.held = [];
    this.hash = createHash('sha256');
    if (size > 0) {
      this.state = 'chunk-data';
      return true;
    }
    // The final, empty chunk: signed over no data, then the trailer or the closing CRLF.
    const signature = this.signChunk(EMPTY_SHA256);
    this.push(`${match[1]!};chunk-signature=${signature}\r\n`);
    this.state = this.context.trailer ? 'trailer-line' : 'final-crlf';
    return true;
  }

  private emitChunk(): void {
    const hex = CHUNK_HEADER.exec(this.chunkLine)![1]!;
    const signature = this.signChunk(this.hash.digest('hex'));
    this.push(`${hex};chunk-signature=${signature}\r\n`);
    for (const piece of this.held) this.push(piece);
    this.push(CRLF);
    this.held = [];
    this.state = 'chunk-header';
  }

  private trailerLine(line: string): void {
    if (line === '') {
      this.push(CRLF);
      this.state = 'passthrough';
      return;
    }
    const signatureLine = TRAILER_SIGNATURE.exec(line);
    if (signatureLine) {
      const block = [...this.trailerLines].sort().join('');
      const prefix = this.context.algorithm === SIGV4_ALGORITHM ? 'AWS4-HMAC-SHA256' : 'AWS4-ECDSA-P256-SHA256';
      const sts = `${prefix}-TRAILER\n${this.context.amzDate}\n${this.context.scope}\n${this.previous}\n${sha256Hex(block)}`;
      const signature = this.fitted(sts, signatureLine[1]!.length);
      this.push(`x-amz-trailer-signature:${signature}\r\n`);
      return;
    }
    const colon = line.indexOf(':');
    if (colon > 0) {
      this.trailerLines.push(
        `${line.slice(0, colon).trim().toLowerCase()}:${canonicalHeaderValue(line.slice(colon + 1))}\n`,
      );
    }
    this.push(line + '\r\n', 'latin1');
  }

  private signChunk(dataHash: string): string {
    const prefix = this.context.algorithm === SIGV4_ALGORITHM ? 'AWS4-HMAC-SHA256' : 'AWS4-ECDSA-P256-SHA256';
    const sts = `${prefix}-PAYLOAD\n${this.context.amzDate}\n${this.context.scope}\n${this.previous}\n${EMPTY_SHA256}\n${dataHash}`;
    return this.fitted(sts, this.chunkSignatureWidth);
  }

  /** Sign, chain, and pad to the client's width (SigV4A only; SigV4 signatures are always 64 wide). */
  private fitted(sts: string, width: number): string {
    const signature = this.context.sign(sts, width);
    this.previous = signature;
    return signature.length < width ? signature + SIGV4A_PADDING.repeat(width - signature.length) : signature;
  }

  private giveUp(reason: string, rest: Buffer): void {
    this.failure = reason;
    this.emit('resign-failure', reason);
    // What was read of the current chunk goes out as it came, so the upstream sees the client's bytes, not ours.
    if (this.state === 'chunk-data' || this.state === 'chunk-crlf') {
      this.push(this.chunkLine + '\r\n', 'latin1');
      for (const piece of this.held) this.push(piece);
    }
    this.held = [];
    this.state = 'passthrough';
    if (rest.length > 0) this.push(Buffer.from(rest));
  }
}
