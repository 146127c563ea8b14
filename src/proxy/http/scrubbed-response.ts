import type { Readable, Transform } from 'node:stream';
import zlib from 'node:zlib';
import { responseScrubber, type InjectedValue, type ScrubbingTransform } from '../credentials/response-scrubber.js';
import { headerValues, setHeader, type HeaderPairs } from './headers.js';

/**
 * A response from a host that received a real value, on its way back to the sandbox: status line, header names and
 * values, and body have every real value mapped back to what the sandbox sent (credentials/response-scrubber.ts).
 * The request asked for `Accept-Encoding: identity`; an upstream that compresses anyway is decoded, scrubbed and
 * re-encoded in the same coding, and a coding the proxy cannot undo is refused rather than passed on unread.
 */

interface Codec {
  decode(): Transform;
  encode(): Transform;
}

// Flushed per write: a compressed stream (server-sent events, say) keeps arriving as it is produced.
const GZIP_OPTIONS = { flush: zlib.constants.Z_SYNC_FLUSH };
const BROTLI_OPTIONS = {
  flush: zlib.constants.BROTLI_OPERATION_FLUSH,
  // Brotli's default quality (11) is for static assets; this runs on a live response.
  params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 4 },
};

const CODECS: Record<string, Codec> = {
  gzip: { decode: () => zlib.createGunzip(), encode: () => zlib.createGzip(GZIP_OPTIONS) },
  deflate: { decode: () => zlib.createInflate(), encode: () => zlib.createDeflate(GZIP_OPTIONS) },
  br: { decode: () => zlib.createBrotliDecompress(), encode: () => zlib.createBrotliCompress(BROTLI_OPTIONS) },
};
CODECS['x-gzip'] = CODECS.gzip!;

export interface ResponseHead {
  method: string;
  status: number;
  statusMessage: string | undefined;
  /** Hop-by-hop headers already removed. */
  headers: HeaderPairs;
}

export type ScrubbedResponse =
  | { kind: 'refuse'; reason: string }
  | {
      kind: 'relay';
      statusMessage: string | undefined;
      headers: HeaderPairs;
      /**
       * Pipes the upstream body through the scrubber (decoded and re-encoded around it when compressed) and returns
       * the stream to send on. A failing stage destroys every stage and reports once.
       */
      body(source: Readable, onError: (err: Error) => void): Readable;
      /** `scrubbed: N` when anything was replaced; complete once the body has ended. */
      annotations(): string[];
    };

/** RFC 9110 §6.4.1: these responses never carry content, whatever their headers announce. */
function bodyless(head: ResponseHead): boolean {
  return head.method === 'HEAD' || head.status === 204 || head.status === 304 || head.status < 200;
}

/**
 * Plans the response for a request that carried `injected` real values; null when none of them needs mapping back.
 */
export function scrubResponse(injected: readonly InjectedValue[], head: ResponseHead): ScrubbedResponse | null {
  const scrubber = responseScrubber(injected);
  if (!scrubber) return null;
  let replacedInHead = 0;
  const scrub = (text: string): string => {
    const scrubbed = scrubber.text(text);
    replacedInHead += scrubbed.replacements;
    return scrubbed.text;
  };
  const statusMessage = head.statusMessage === undefined ? undefined : scrub(head.statusMessage);
  let headers = head.headers.map(([name, value]): [string, string] => [scrub(name), scrub(value)]);
  const annotations = (body: ScrubbingTransform | null) => () => {
    const total = replacedInHead + (body?.replacements ?? 0);
    return total > 0 ? [`scrubbed: ${total}`] : [];
  };
  if (bodyless(head)) {
    return { kind: 'relay', statusMessage, headers, body: (source) => source, annotations: annotations(null) };
  }

  const codings = headerValues(headers, 'content-encoding')
    .flatMap((v) => v.split(','))
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  const codec = codings.length === 1 ? CODECS[codings[0]!] : codings.length === 0 ? null : undefined;
  if (codec === undefined) {
    return {
      kind: 'refuse',
      // The upstream's words, scrubbed above; cut short so a hostile header cannot flood the log line.
      reason: `the response is encoded '${codings.join(', ').slice(0, 64)}', which the proxy cannot decode to remove the credential it injected`,
    };
  }
  // A body whose length may change is re-framed (chunked, or read to close for an HTTP/1.0 client).
  if (codec !== null || !scrubber.lengthPreserving) headers = setHeader(headers, 'Content-Length', null);
  const transform = scrubber.body();
  return {
    kind: 'relay',
    statusMessage,
    headers,
    body(source, onError) {
      const stages = codec ? [codec.decode(), transform, codec.encode()] : [transform];
      let failed = false;
      const fail = (err: Error) => {
        if (failed) return;
        failed = true;
        for (const stage of stages) stage.destroy();
        onError(err);
      };
      // Destroyed upstream (the client went away, a reset): nothing will end the stages, so they are freed here.
      source.on('close', () => {
        if (!source.readableEnded) for (const stage of stages) stage.destroy();
      });
      let out: Readable = source;
      for (const stage of stages) {
        stage.on('error', fail);
        out = out.pipe(stage);
      }
      return out;
    },
    annotations: annotations(transform),
  };
}
