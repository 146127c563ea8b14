import type { HeaderPairs } from './headers.js';

/**
 * What the proxy forwards is what it judged (style practice 17). This is the one place that writes the parts of an
 * upstream request an upstream uses to tell requests and virtual hosts apart: the method, the origin-form target,
 * `Host`, the port, and the body's framing. Each comes from the admission, the route and what the proxy itself
 * read of the body — never from a header the sandbox wrote, and never dropped on its say-so.
 */

/** How a request body is delimited on a hop. */
export type BodyFraming =
  /** No body at all. */
  | { kind: 'none' }
  /** Exactly `bytes` bytes (a body the proxy holds, or one whose length Node's strict parser read). */
  | { kind: 'length'; bytes: number }
  /** A stream of unknown length, re-chunked on this hop (Node de-chunks what it reads). */
  | { kind: 'chunked' };

/**
 * The framing of a body as Node's strict parser delimited it on the sandbox's side: `Transfer-Encoding` (which the
 * parser only accepts ending in `chunked`, never beside `Content-Length`), else `Content-Length`, else no body.
 */
export function framingOf(headers: { 'content-length'?: string; 'transfer-encoding'?: string }): BodyFraming {
  if (headers['transfer-encoding'] !== undefined) return { kind: 'chunked' };
  const length = headers['content-length'];
  if (length === undefined) return { kind: 'none' };
  const bytes = Number(length);
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error('unparseable Content-Length');
  return { kind: 'length', bytes };
}

export interface UpstreamHeadInput {
  method: string;
  /** `Host` as the proxy judged it: the normalised host and the listener's port (Admission.authority). */
  authority: string;
  /** Where the route sends the request: the `upstream_hosts` port, else the listener's. */
  port: number;
  /** The credential passes' output: headers with hop-by-hop ones gone, and the (maybe re-signed) target. */
  credentials: { headers: HeaderPairs; target: string };
  framing: BodyFraming;
  /** Ask the upstream for `100 Continue` before the body (a streamed body whose client is waiting for one). */
  expectContinue?: boolean;
  /** A WebSocket handshake: the only upgrade ever forwarded. */
  websocket?: boolean;
}

export interface UpstreamHead {
  method: string;
  /** Origin-form. */
  target: string;
  port: number;
  /** `Host` first, then the end-to-end headers in the sandbox's order, then framing and connection management. */
  headers: HeaderPairs;
}

/** Headers only this function writes: anything of these names in the input is dropped. */
const OWNED = new Set(['host', 'content-length', 'transfer-encoding', 'expect', 'connection', 'upgrade']);

export function upstreamHead(input: UpstreamHeadInput): UpstreamHead {
  const { target } = input.credentials;
  // The admission only lets origin-form through; a credential pass must not turn it into anything else.
  if (!target.startsWith('/')) throw new Error('an upstream target must be origin-form');
  if (input.websocket && input.framing.kind !== 'none') throw new Error('a WebSocket handshake carries no body');
  const headers: HeaderPairs = [['Host', input.authority]];
  for (const pair of input.credentials.headers) {
    if (!OWNED.has(pair[0].toLowerCase())) headers.push(pair);
  }
  switch (input.framing.kind) {
    case 'length':
      headers.push(['Content-Length', String(input.framing.bytes)]);
      break;
    case 'chunked':
      headers.push(['Transfer-Encoding', 'chunked']);
      break;
    case 'none':
      break;
  }
  if (input.expectContinue && input.framing.kind !== 'none') headers.push(['Expect', '100-continue']);
  if (input.websocket) headers.push(['Connection', 'Upgrade'], ['Upgrade', 'websocket']);
  return { method: input.method, target, port: input.port, headers };
}
