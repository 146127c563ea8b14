import { performance } from 'node:perf_hooks';
import type { Allowlist } from '../../protocol/allowlist.js';
import type { CredentialProcessor, CredentialResult } from '../credentials/types.js';
import type { NetworkLog } from '../log/network-log.js';
import type { UpstreamConnector } from '../upstream/connector.js';
import type { UpstreamRoute } from '../upstream/route.js';
import type { Admission, Listener, Refusal } from './admission.js';
import type { HeaderPairs } from './headers.js';
import type { ProxyErrorBody } from './responses.js';
import type { BodyFraming } from './upstream-head.js';

/**
 * What every protocol the proxy speaks to the sandbox shares (HTTP/1.1 requests, upgrades, and HTTP/2 streams
 * next): the context the stages run in, an exchange described without Node's IncomingMessage, the protocol side
 * that supplies its body and writes its answers, and how an exchange is recorded in the network log.
 */

export interface HttpLimits {
  /** Most bytes of a refused upload read (and discarded) so the client sees the 403 before the connection closes. */
  drainBytes: number;
  /** Longest time spent draining a refused upload. */
  drainTimeoutMs: number;
}

export interface HttpContext {
  allowlist: Allowlist;
  credentials: CredentialProcessor;
  route: (host: string, port: number) => Promise<UpstreamRoute>;
  connector: UpstreamConnector;
  log: NetworkLog;
  limits: HttpLimits;
  now: () => Date;
  /** Audit mode: policy refusals are let through and logged as `would_block` (see admission.ts). */
  audit: boolean;
}

/** A request as the sandbox sent it, whatever the protocol it came in: what the stages judge and forward. */
export interface ExchangeRequest {
  listener: Listener;
  method: string;
  /** The request target exactly as sent (origin-form, absolute-form or `*`). */
  rawTarget: string;
  /** Every header in wire order, original case and duplicates kept. */
  headers: HeaderPairs;
  /** TLS SNI on an HTTPS listener; null when the client sent none or on plain HTTP. */
  sni: string | null;
  body: RequestBody;
}

/** The request body as the protocol delivers it: read whole (bounded) for a stage that must see it, or streamed. */
export interface RequestBody {
  /** Whether the request announces a body (RFC 9112 §6.3). */
  readonly announced: boolean;
  /** How the client delimited the body, as the protocol's parser read it. */
  framing(): BodyFraming;
  /**
   * Reads the whole body, asking the client for it first when it waits for `100 Continue`; 'too-large' once past
   * `maxBytes`, 'aborted' when the client went away.
   */
  read(maxBytes: number): Promise<Buffer | 'too-large' | 'aborted'>;
}

/** A failure answered by the proxy itself: the upstream could not be reached or answered wrong, or a pass failed. */
export interface ExchangeFailure {
  status: 413 | 500 | 502;
  error: ProxyErrorBody['error'];
  reason: string;
  /** The request body was read only in part, or not at all: nothing else can follow on this connection. */
  closeConnection?: boolean;
}

/**
 * The protocol side of one exchange: how its refusal and its failure are written back. HTTP/1.1 answers with a
 * response, an upgrade or CONNECT on the raw socket Node handed over, an HTTP/2 stream on the stream.
 */
export interface ExchangePeer {
  /**
   * Answers a refusal. `record(bytes)` is called just before the answer goes out, with the bytes of an upload read
   * and discarded first: a client still sending when the connection closes often reports a reset, not the 403.
   */
  refuse(refusal: Refusal, method: string, record: (uploadBytesDiscarded: number) => void): void;
  /** Answers a failure (413, 500 or 502 with a JSON body); when an answer has already begun, cuts the exchange. */
  fail(failure: ExchangeFailure, body: ProxyErrorBody): void;
  /** Ends the exchange without an answer: the client went away mid-request. */
  abandon(): void;
}

/** What a log line needs to know about one exchange. */
export interface Exchange {
  listener: Listener;
  method: string;
  url: string;
  host: string;
  path: string;
  started: number;
}

export function elapsedMs(started: number): number {
  return Math.round((performance.now() - started) * 10) / 10;
}

/** The URL as the sandbox addressed it, for the log: scheme, Host as sent, target. Never a rewritten target. */
export function describeExchange(request: ExchangeRequest, judged: Admission | Refusal): Exchange {
  const { listener } = request;
  const hostShown = judged.kind === 'allow' ? judged.hostHeader : judged.host || '-';
  const target = judged.kind === 'allow' ? judged.target : judged.path;
  return {
    listener,
    method: request.method || '-',
    url: `${listener.scheme}://${hostShown}${target}`,
    host: judged.host,
    path: target,
    started: performance.now(),
  };
}

export function logRefusal(ctx: HttpContext, exchange: Exchange, refusal: Refusal, bytesIn = 0): void {
  ctx.log.write({
    event: 'request',
    ts: ctx.now(),
    decision: 'blocked',
    method: exchange.method,
    url: exchange.url,
    host: exchange.host,
    port: exchange.listener.port,
    path: exchange.path,
    status: refusal.status,
    code: refusal.code,
    reason: refusal.reason,
    ...(refusal.hint !== undefined ? { hint: refusal.hint } : {}),
    ...(refusal.rule !== undefined ? { rule: refusal.rule } : {}),
    bytesIn,
    bytesOut: 0,
    durationMs: elapsedMs(exchange.started),
    annotations: [],
  });
}

export function logUpstreamError(ctx: HttpContext, exchange: Exchange, reason: string): void {
  ctx.log.write({
    event: 'error',
    ts: ctx.now(),
    method: exchange.method,
    url: exchange.url,
    host: exchange.host,
    port: exchange.listener.port,
    path: exchange.path,
    reason,
    durationMs: elapsedMs(exchange.started),
  });
}

export function logCredentialEvents(ctx: HttpContext, result: CredentialResult): void {
  for (const line of result.events) ctx.log.write({ event: 'credential', ts: ctx.now(), line });
}

export function logAllowed(
  ctx: HttpContext,
  exchange: Exchange,
  admission: Admission,
  outcome: { status: number; bytesIn: number; bytesOut: number; annotations: string[] },
): void {
  // Audit mode: the policy refusal the request would have got (the admission's, or a body filter's).
  const wouldBlock = admission.wouldBlock;
  ctx.log.write({
    event: 'request',
    ts: ctx.now(),
    method: exchange.method,
    url: exchange.url,
    host: exchange.host,
    port: exchange.listener.port,
    path: exchange.path,
    durationMs: elapsedMs(exchange.started),
    ...outcome,
    ...(wouldBlock
      ? {
          decision: 'would_block' as const,
          code: wouldBlock.code,
          reason: wouldBlock.reason,
          ...(wouldBlock.hint !== undefined ? { hint: wouldBlock.hint } : {}),
          ...(wouldBlock.rule !== undefined ? { rule: wouldBlock.rule } : {}),
        }
      : { decision: 'allowed' as const, code: 'allowed', rule: admission.rule }),
  });
}
