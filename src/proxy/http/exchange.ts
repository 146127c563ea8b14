import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import type { Allowlist } from '../../protocol/allowlist.js';
import type { CredentialProcessor, CredentialResult, RequestHead } from '../credentials/types.js';
import type { NetworkLog } from '../log/network-log.js';
import type { UpstreamConnector } from '../upstream/connector.js';
import type { UpstreamRoute } from '../upstream/route.js';
import { admit, FIXED_HINTS, type Admission, type Listener, type Refusal } from './admission.js';
import { headerValues, pairsFromRaw, setHeaderInPlace, withoutHopByHop } from './headers.js';

/**
 * What the request path and the upgrade path share: the context they run in, how an exchange is described in
 * the network log, admission of an incoming request, and the credential passes.
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
}

/** What a log line needs to know about one request. */
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
export function exchangeFor(listener: Listener, req: IncomingMessage, admission: Admission | Refusal): Exchange {
  const hostShown = admission.kind === 'allow' ? admission.hostHeader : admission.host || '-';
  const target = admission.kind === 'allow' ? admission.target : admission.path;
  return {
    listener,
    method: req.method ?? '-',
    url: `${listener.scheme}://${hostShown}${target}`,
    host: admission.host,
    path: target,
    started: performance.now(),
  };
}

export function logRefusal(ctx: HttpContext, x: Exchange, refusal: Refusal, bytesIn = 0): void {
  ctx.log.write({
    event: 'request',
    ts: ctx.now(),
    decision: 'blocked',
    method: x.method,
    url: x.url,
    host: x.host,
    port: x.listener.port,
    path: x.path,
    status: refusal.status,
    code: refusal.code,
    reason: refusal.reason,
    bytesIn,
    bytesOut: 0,
    durationMs: elapsedMs(x.started),
    annotations: [],
  });
}

export function logUpstreamError(ctx: HttpContext, x: Exchange, reason: string): void {
  ctx.log.write({
    event: 'error',
    ts: ctx.now(),
    method: x.method,
    url: x.url,
    host: x.host,
    port: x.listener.port,
    path: x.path,
    reason,
    durationMs: elapsedMs(x.started),
  });
}

export function logCredentialEvents(ctx: HttpContext, result: CredentialResult): void {
  for (const line of result.events) ctx.log.write({ event: 'credential', ts: ctx.now(), line });
}

export function sniOf(listener: Listener, req: IncomingMessage): string | null {
  if (listener.scheme !== 'https') return null;
  const name = (req.socket as TLSSocket).servername;
  return typeof name === 'string' && name !== '' ? name : null;
}

export function admitIncoming(ctx: HttpContext, listener: Listener, req: IncomingMessage): Admission | Refusal {
  const headers = pairsFromRaw(req.rawHeaders);
  return admit(
    {
      listener,
      method: req.method ?? '',
      rawTarget: req.url ?? '',
      hostHeaders: headerValues(headers, 'host'),
      sni: sniOf(listener, req),
      connection: headerValues(headers, 'connection'),
      ...(ctx.credentials.usesHeader ? { credentialHeader: ctx.credentials.usesHeader } : {}),
    },
    ctx.allowlist,
  );
}

/**
 * The request as the credential passes see it: hop-by-hop headers gone, wire order and case kept, and Host already
 * the one the proxy sends (so what AWS re-signing signs is what travels).
 */
export function credentialHead(
  listener: Listener,
  req: IncomingMessage,
  x: Exchange,
  admission: Admission,
): RequestHead {
  return {
    method: x.method,
    host: admission.host,
    hostHeader: admission.authority,
    port: admission.port,
    target: admission.target,
    // The masked pass never puts a real value into a request that travels upstream in clear text.
    scheme: listener.scheme,
    headers: setHeaderInPlace(withoutHopByHop(pairsFromRaw(req.rawHeaders)), 'Host', admission.authority),
  };
}

export function addressRefusal(admission: Admission, reason: string): Refusal {
  return {
    kind: 'deny',
    status: 403,
    code: 'upstream_address_not_allowed',
    host: admission.host,
    path: admission.target,
    reason,
    hint: FIXED_HINTS.upstream_address_not_allowed!,
  };
}

export type Prepared =
  | { kind: 'send'; result: CredentialResult; body: Buffer | null }
  | { kind: 'failed'; status: 413 | 500; reason: string };

/**
 * Runs the credential passes on an admitted request. A pass that must see the body (AWS signing without a payload
 * hash header) gets it buffered up to its own bound; larger bodies are refused with 413 rather than forwarded
 * with a signature that cannot be right.
 */
export async function prepareCredentials(
  ctx: HttpContext,
  head: RequestHead,
  readBody: (maxBytes: number) => Promise<Buffer | 'too-large' | 'aborted'>,
): Promise<Prepared> {
  let outcome;
  try {
    outcome = ctx.credentials(head);
  } catch (err) {
    return { kind: 'failed', status: 500, reason: `credential pass failed: ${(err as Error).name}` };
  }
  if (outcome.kind === 'ready') return { kind: 'send', result: outcome.result, body: null };
  const body = await readBody(outcome.maxBytes);
  if (body === 'too-large') {
    return { kind: 'failed', status: 413, reason: `the body must be signed and is over ${outcome.maxBytes} bytes` };
  }
  if (body === 'aborted') return { kind: 'failed', status: 500, reason: 'the client aborted the request' };
  try {
    return { kind: 'send', result: outcome.complete(body), body };
  } catch (err) {
    return { kind: 'failed', status: 500, reason: `credential pass failed: ${(err as Error).name}` };
  }
}

export function logAllowed(
  ctx: HttpContext,
  x: Exchange,
  admission: Admission,
  outcome: { status: number; bytesIn: number; bytesOut: number; annotations: string[] },
): void {
  ctx.log.write({
    event: 'request',
    ts: ctx.now(),
    decision: 'allowed',
    method: x.method,
    url: x.url,
    host: x.host,
    port: x.listener.port,
    path: x.path,
    code: 'allowed',
    rule: admission.rule,
    durationMs: elapsedMs(x.started),
    ...outcome,
  });
}
