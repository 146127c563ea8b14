import type { CredentialResult, RequestHead } from '../credentials/types.js';
import type { UpstreamRoute } from '../upstream/route.js';
import { admit, FIXES, type Admission, type Refusal } from './admission.js';
import { bodyFiltersFor, inspectionLimit, judgeBody, type InspectedBody } from './body-filters.js';
import {
  describeExchange,
  logCredentialEvents,
  logRefusal,
  logUpstreamError,
  type Exchange,
  type ExchangeFailure,
  type ExchangePeer,
  type ExchangeRequest,
  type HttpContext,
} from './exchange.js';
import { headerValues, setHeader, setHeaderInPlace, withoutHopByHop } from './headers.js';

/**
 * The request pipeline (style practice 15). Every exchange, whatever protocol carried it, passes the same named
 * stages in order — admit, read and filter the body, route, credentials — and each returns a verdict: pass on with
 * what it established, refuse, fail, or abandon. `runStages` acts on the verdicts in one place: `deny` is the only
 * way a refusal is answered and `failExchange` the only way a failure is, so a blocked request never reaches the
 * credential passes or the network. Forwarding and relaying the answer are the protocol's own (forward.ts for
 * HTTP/1.1 requests, upgrade.ts for WebSocket handshakes) and end in the same two paths.
 */

export type Verdict<T> =
  | { kind: 'pass'; value: T }
  | { kind: 'deny'; refusal: Refusal }
  | { kind: 'fail'; failure: ExchangeFailure }
  /** The client went away: there is no one to answer. */
  | { kind: 'abandon' };

const pass = <T>(value: T): Verdict<T> => ({ kind: 'pass', value });
const denied = (refusal: Refusal): Verdict<never> => ({ kind: 'deny', refusal });
const failed = (failure: ExchangeFailure): Verdict<never> => ({ kind: 'fail', failure });

/** Admission (admission.ts) of a request as the sandbox sent it: it passes or is refused, never fails. */
export function admitStage(
  ctx: HttpContext,
  request: ExchangeRequest,
): Extract<Verdict<Admission>, { kind: 'pass' | 'deny' }> {
  const judged = admit(
    {
      listener: request.listener,
      method: request.method,
      rawTarget: request.rawTarget,
      hostHeaders: headerValues(request.headers, 'host'),
      sni: request.sni,
      connection: headerValues(request.headers, 'connection'),
      ...(ctx.credentials.usesHeader ? { credentialHeader: ctx.credentials.usesHeader } : {}),
    },
    ctx.allowlist,
    ctx.audit,
  );
  return judged.kind === 'allow' ? { kind: 'pass', value: judged } : { kind: 'deny', refusal: judged };
}

/**
 * The body filters (GraphQL operations, Anthropic tool domains) judge before anything, even DNS, happens upstream.
 * Most requests have none to run: their verdict comes at once (no await) and their body keeps streaming.
 */
export function bodyStage(
  ctx: HttpContext,
  request: ExchangeRequest,
  admission: Admission,
): Verdict<InspectedBody | null> | Promise<Verdict<InspectedBody | null>> {
  const filters = bodyFiltersFor(admission);
  if (!filters) return pass(null);
  return request.body.read(inspectionLimit(filters)).then((raw): Verdict<InspectedBody | null> => {
    if (raw === 'aborted') return { kind: 'abandon' };
    const contentEncoding = headerValues(request.headers, 'content-encoding');
    const verdict = judgeBody(
      raw,
      contentEncoding.length > 0 ? contentEncoding.join(', ') : undefined,
      admission,
      filters,
      ctx.allowlist,
      ctx.audit,
    );
    return verdict.kind === 'refuse' ? denied(verdict.refusal) : pass(verdict);
  });
}

export type ConnectRoute = Extract<UpstreamRoute, { kind: 'connect' }>;

export function addressRefusal(admission: Admission, reason: string): Refusal {
  return {
    kind: 'deny',
    status: 403,
    code: 'upstream_address_not_allowed',
    host: admission.host,
    path: admission.target,
    reason,
    fix: FIXES.upstream_address_not_allowed!,
  };
}

/** Where the request goes: an address the guard refuses is a refusal, a name that does not resolve a failure. */
export async function routeStage(ctx: HttpContext, admission: Admission): Promise<Verdict<ConnectRoute>> {
  const route = await ctx.route(admission.host, admission.port);
  if (route.kind === 'forbidden') return denied(addressRefusal(admission, route.reason));
  if (route.kind === 'failed') return failed({ status: 502, error: 'upstream_error', reason: route.reason });
  return pass(route);
}

/**
 * The request as the credential passes see it: hop-by-hop headers gone, wire order and case kept, and Host already
 * the one the proxy sends (so what AWS re-signing signs is what travels).
 */
export function credentialHead(request: ExchangeRequest, admission: Admission): RequestHead {
  return {
    method: request.method,
    host: admission.host,
    hostHeader: admission.authority,
    port: admission.port,
    target: admission.target,
    // The masked pass never puts a real value into a request that travels upstream in clear text.
    scheme: request.listener.scheme,
    headers: setHeaderInPlace(withoutHopByHop(request.headers), 'Host', admission.authority),
  };
}

/** What the credential stage hands on: the request as it will travel, and the body when the proxy holds it. */
export interface Credentialed {
  credentials: CredentialResult;
  /** The body read by a filter or a pass that signs it; null when it streams from the client. */
  body: Buffer | null;
}

const passFailed = (err: unknown): ExchangeFailure => ({
  status: 500,
  error: 'proxy_error',
  reason: `credential pass failed: ${(err as Error).name}`,
  closeConnection: true,
});

/**
 * Runs the credential passes on an admitted request. A pass that must see the body (AWS signing without a payload
 * hash header) gets it buffered up to its own bound; larger bodies are refused with 413 rather than forwarded
 * with a signature that cannot be right.
 */
export async function credentialStage(
  ctx: HttpContext,
  request: ExchangeRequest,
  admission: Admission,
  inspected: InspectedBody | null,
): Promise<Verdict<Credentialed>> {
  let outcome;
  try {
    outcome = ctx.credentials(credentialHead(request, admission));
  } catch (err) {
    return failed(passFailed(err));
  }
  let credentials: CredentialResult;
  let body: Buffer | null = inspected?.body ?? null;
  if (outcome.kind === 'ready') credentials = outcome.result;
  else {
    const read = inspected
      ? inspected.body.length > outcome.maxBytes
        ? 'too-large'
        : inspected.body
      : await request.body.read(outcome.maxBytes);
    if (read === 'too-large') {
      return failed({
        status: 413,
        error: 'request_body_too_large',
        reason: `the body must be signed and is over ${outcome.maxBytes} bytes`,
        closeConnection: true,
      });
    }
    if (read === 'aborted') {
      return failed({
        status: 500,
        error: 'proxy_error',
        reason: 'the client aborted the request',
        closeConnection: true,
      });
    }
    body = read;
    try {
      credentials = outcome.complete(read);
    } catch (err) {
      return failed(passFailed(err));
    }
  }
  if (!inspected) return pass({ credentials, body });
  if (credentials.bodyTransform) {
    // A streaming-signed (aws-chunked) body would be re-framed by the transform; the filter read it unframed.
    return failed({
      status: 500,
      error: 'proxy_error',
      reason: 'a streaming-signed body cannot pass a body filter',
      closeConnection: true,
    });
  }
  return pass({
    body,
    credentials: {
      ...credentials,
      // A rewritten body travels decoded; the filters never change anything else.
      headers: inspected.decoded ? setHeader(credentials.headers, 'Content-Encoding', null) : credentials.headers,
      annotations: [...inspected.annotations, ...credentials.annotations],
    },
  });
}

/** The one way a refusal is answered: recorded in the log, then answered with the JSON 403 (or 400). */
export function deny(ctx: HttpContext, exchange: Exchange, peer: ExchangePeer, refusal: Refusal): void {
  peer.refuse(refusal, exchange.method, (bytesIn) => logRefusal(ctx, exchange, refusal, bytesIn));
}

/** The one way a failure is answered: recorded in the log, then answered with the JSON 502 (or 413, 500). */
export function failExchange(ctx: HttpContext, exchange: Exchange, peer: ExchangePeer, failure: ExchangeFailure): void {
  logUpstreamError(ctx, exchange, failure.reason);
  peer.fail(failure, {
    error: failure.error,
    method: exchange.method,
    host: exchange.host,
    path: exchange.path,
    reason: failure.reason,
  });
}

/** Acts on a verdict that stops the exchange; true when the verdict passes it on. */
function proceeds<T>(
  ctx: HttpContext,
  exchange: Exchange,
  peer: ExchangePeer,
  verdict: Verdict<T>,
): verdict is Extract<Verdict<T>, { kind: 'pass' }> {
  switch (verdict.kind) {
    case 'pass':
      return true;
    case 'deny':
      deny(ctx, exchange, peer, verdict.refusal);
      return false;
    case 'fail':
      failExchange(ctx, exchange, peer, verdict.failure);
      return false;
    case 'abandon':
      peer.abandon();
      return false;
  }
}

/** An exchange every stage passed: what forwarding it needs. */
export interface ForwardableExchange {
  exchange: Exchange;
  admission: Admission;
  route: ConnectRoute;
  credentials: CredentialResult;
  /** The body the proxy holds (read by a filter or a pass), or null when it streams from the client. */
  body: Buffer | null;
}

/** How a protocol takes part in the stages. */
export interface ProtocolStages {
  /** A check of the protocol's own after admission, before anything else (a WebSocket handshake's shape). */
  check?: (admission: Admission, request: ExchangeRequest) => Refusal | null;
  /** Whether the body filters read the body. A handshake has none: what it carries travels in frames later. */
  filtersBody: boolean;
}

/**
 * Runs the stages in order and answers any verdict that stops the exchange; resolves with the exchange to forward,
 * or null when it was answered here. A refusal at admission is answered before this returns, synchronously: Node
 * may be about to hand over a request pipelined behind it, which must see the connection as closing.
 */
export async function runStages(
  ctx: HttpContext,
  request: ExchangeRequest,
  peer: ExchangePeer,
  protocol: ProtocolStages,
): Promise<ForwardableExchange | null> {
  const admitted = admitStage(ctx, request);
  const exchange = describeExchange(request, admitted.kind === 'pass' ? admitted.value : admitted.refusal);
  if (!proceeds(ctx, exchange, peer, admitted)) return null;
  let admission = admitted.value;
  const problem = protocol.check?.(admission, request) ?? null;
  if (problem) {
    deny(ctx, exchange, peer, problem);
    return null;
  }
  const filtered = protocol.filtersBody ? bodyStage(ctx, request, admission) : pass(null);
  const inspected = filtered instanceof Promise ? await filtered : filtered;
  if (!proceeds(ctx, exchange, peer, inspected)) return null;
  // Audit mode: a GraphQL refusal the filter did not enforce is logged like the admission's own.
  const bodyWouldBlock = inspected.value?.wouldBlock;
  if (bodyWouldBlock && !admission.wouldBlock) admission = { ...admission, wouldBlock: bodyWouldBlock };
  const routed = await routeStage(ctx, admission);
  if (!proceeds(ctx, exchange, peer, routed)) return null;
  const credentialed = await credentialStage(ctx, request, admission, inspected.value);
  if (!proceeds(ctx, exchange, peer, credentialed)) return null;
  logCredentialEvents(ctx, credentialed.value.credentials);
  return { exchange, admission, route: routed.value, ...credentialed.value };
}
