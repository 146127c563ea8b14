import type { ClientRequest, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import type { CredentialResult } from '../credentials/types.js';
import { describeUpstreamError } from '../upstream/connector.js';
import type { UpstreamRoute } from '../upstream/route.js';
import type { Admission, Listener, Refusal } from './admission.js';
import {
  addressRefusal,
  admitIncoming,
  credentialHead,
  exchangeFor,
  logAllowed,
  logCredentialEvents,
  logRefusal,
  logUpstreamError,
  prepareCredentials,
  type Exchange,
  type HttpContext,
} from './exchange.js';
import { bodyFiltersFor, readBounded, runBodyFilters } from './body-filters.js';
import { flatten, hasRequestBody, pairsFromRaw, setHeader, withoutHopByHop } from './headers.js';
import { sendProxyError, sendRefusal, writeRawJson, writeRawRefusal } from './responses.js';
import { scrubResponse } from './scrubbed-response.js';
import { forwardUpgrade } from './upgrade.js';
import { framingOf, upstreamHead } from './upstream-head.js';

/**
 * The enforcement point: every request the sandbox makes on the HTTP or HTTPS listener comes through here, is
 * admitted or refused (admission.ts), gets its credentials swapped (credential passes) and is streamed to the
 * upstream and back with backpressure. Blocked requests never reach the credential passes or the network.
 */

/**
 * Answers a refusal. An announced upload is read and discarded first (up to a bound), because a client still
 * sending when the connection closes often reports a reset instead of the 403 that explains it.
 */
function refuse(
  ctx: HttpContext,
  req: IncomingMessage,
  res: ServerResponse,
  x: Exchange,
  refusal: Refusal,
  expectContinue: boolean,
): void {
  // A client waiting for 100 Continue has not sent its body: answer now and close rather than wait for it.
  if (expectContinue || !hasRequestBody(req.headers) || req.complete) {
    logRefusal(ctx, x, refusal);
    sendRefusal(res, refusal, x.method, expectContinue && !req.complete);
    return;
  }
  let drained = 0;
  let answered = false;
  const answer = (complete: boolean) => {
    if (answered) return;
    answered = true;
    clearTimeout(timer);
    logRefusal(ctx, x, refusal, drained);
    sendRefusal(res, refusal, x.method, !complete);
  };
  const timer = setTimeout(() => answer(false), ctx.limits.drainTimeoutMs);
  timer.unref();
  req.on('data', (chunk: Buffer) => {
    drained += chunk.length;
    if (drained > ctx.limits.drainBytes) answer(false);
  });
  req.on('end', () => answer(true));
  req.on('error', () => answer(false));
}

async function handleRequest(
  ctx: HttpContext,
  listener: Listener,
  req: IncomingMessage,
  res: ServerResponse,
  expectContinue: boolean,
): Promise<void> {
  const admission = admitIncoming(ctx, listener, req);
  const x = exchangeFor(listener, req, admission);
  if (admission.kind === 'deny') {
    refuse(ctx, req, res, x, admission, expectContinue);
    return;
  }
  // Body filters (GraphQL operations, Anthropic tool domains) judge before anything, even DNS, happens upstream.
  // Most requests have none to run: they skip the extra await and keep streaming their body.
  const filters = bodyFiltersFor(admission);
  const filtered = filters ? await runBodyFilters(ctx.allowlist, req, res, admission, filters, expectContinue) : null;
  if (filtered?.kind === 'aborted') {
    res.destroy();
    return;
  }
  if (filtered?.kind === 'refuse') {
    refuse(ctx, req, res, x, filtered.refusal, false);
    return;
  }
  // The body the filters read (and maybe rewrote); 100 Continue was answered to read it.
  const inspected = filtered?.body ?? null;
  const route = await ctx.route(admission.host, admission.port);
  if (route.kind === 'forbidden') {
    refuse(ctx, req, res, x, addressRefusal(admission, route.reason), expectContinue && inspected === null);
    return;
  }
  if (route.kind === 'failed') {
    logUpstreamError(ctx, x, route.reason);
    sendProxyError(res, 502, upstreamErrorBody(x, route.reason), !req.complete);
    return;
  }
  // Expect is answered hop by hop here (100 relayed from upstream), so it travels on.
  const head = credentialHead(listener, req, x, admission);
  const prepared = await prepareCredentials(ctx, head, (maxBytes) => {
    if (inspected !== null) return Promise.resolve(inspected.length > maxBytes ? 'too-large' : inspected);
    if (expectContinue) res.writeContinue();
    return readBounded(req, maxBytes);
  });
  if (prepared.kind === 'failed') {
    logUpstreamError(ctx, x, prepared.reason);
    sendProxyError(
      res,
      prepared.status,
      {
        ...upstreamErrorBody(x, prepared.reason),
        error: prepared.status === 413 ? 'request_body_too_large' : 'proxy_error',
      },
      true,
    );
    return;
  }
  if (inspected !== null && prepared.result.bodyTransform) {
    // A streaming-signed (aws-chunked) body would be re-framed by the transform; the filter read it unframed.
    const reason = 'a streaming-signed body cannot pass a body filter';
    logUpstreamError(ctx, x, reason);
    sendProxyError(res, 500, { ...upstreamErrorBody(x, reason), error: 'proxy_error' }, true);
    return;
  }
  logCredentialEvents(ctx, prepared.result);
  const result = !filtered
    ? prepared.result
    : {
        ...prepared.result,
        // A rewritten body travels decoded; the filters never change anything else.
        headers: filtered.decoded
          ? setHeader(prepared.result.headers, 'Content-Encoding', null)
          : prepared.result.headers,
        annotations: [...filtered.annotations, ...prepared.result.annotations],
      };
  forward(ctx, req, res, x, admission, route, result, prepared.body ?? inspected, expectContinue && inspected === null);
}

function upstreamErrorBody(x: Exchange, reason: string) {
  return { error: 'upstream_error' as const, method: x.method, host: x.host, path: x.path, reason };
}

/** Exchanges waiting for their answer, by client connection: one 'close' listener per connection serves them all. */
const waitingOn = new WeakMap<Duplex, Set<() => void>>();

/** Calls `onClose` if the client connection closes first; the returned function stops watching. */
function whenConnectionCloses(socket: Duplex, onClose: () => void): () => void {
  let waiting = waitingOn.get(socket);
  if (!waiting) {
    const set = new Set<() => void>();
    waiting = set;
    waitingOn.set(socket, set);
    socket.once('close', () => {
      for (const f of [...set]) f();
      set.clear();
    });
  }
  waiting.add(onClose);
  const set = waiting;
  return () => void set.delete(onClose);
}

function forward(
  ctx: HttpContext,
  req: IncomingMessage,
  res: ServerResponse,
  x: Exchange,
  admission: Admission,
  route: Extract<UpstreamRoute, { kind: 'connect' }>,
  result: CredentialResult,
  body: Buffer | null,
  expectContinue: boolean,
): void {
  // A body the proxy holds travels with its own length; a streamed one with the framing Node read it by.
  const head = upstreamHead({
    method: x.method,
    authority: admission.authority,
    port: route.port,
    credentials: result,
    framing: body !== null ? { kind: 'length', bytes: body.length } : framingOf(req.headers),
    expectContinue: expectContinue && body === null,
  });
  const headers = flatten(head.headers);
  const streamsBody = body === null && hasRequestBody(req.headers);
  let bytesIn = body?.length ?? 0;
  let responded = false;
  let finished = false;
  let continued = false;
  // Nobody could learn what the upstream did with a request sent after its client connection closed.
  if (req.socket.destroyed) return;
  // Node drops an answer queued behind one that ended the connection (a parse error after it, `Connection:
  // close`): the exchange ends there for the sandbox, and the log says so rather than nothing.
  const stopWatching = whenConnectionCloses(req.socket, () => {
    if (finished) return;
    finished = true;
    current.destroy();
    logUpstreamError(ctx, x, 'the client connection closed before the answer was sent');
  });

  const dispatch = (retry: boolean): ClientRequest => {
    const upstream = ctx.connector.request({
      tls: x.listener.scheme === 'https',
      address: route.address,
      port: head.port,
      host: admission.host,
      method: head.method,
      target: head.target,
      headers,
    });
    upstream.on('continue', () => {
      if (expectContinue && !continued) {
        continued = true;
        res.writeContinue();
      }
    });
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (responded || finished) return;
      // A pooled connection the upstream closed while idle: safe to retry once when no body was streamed.
      if (retry && upstream.reusedSocket && !streamsBody && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
        current = dispatch(false);
        return;
      }
      finished = true;
      stopWatching();
      const reason = describeUpstreamError(err);
      logUpstreamError(ctx, x, reason);
      sendProxyError(res, 502, upstreamErrorBody(x, reason), !req.complete);
    });
    upstream.on('response', (upstreamRes) => relay(upstreamRes));
    if (body !== null) upstream.end(body);
    else if (!streamsBody) upstream.end();
    return upstream;
  };

  const relay = (upstreamRes: IncomingMessage) => {
    responded = true;
    const status = upstreamRes.statusCode ?? 502;
    let responseHeaders = withoutHopByHop(pairsFromRaw(upstreamRes.rawHeaders));
    // A host that received a real value may echo it: mapped back to what the sandbox sent. Other hosts skip this.
    const scrubbed = result.injected
      ? scrubResponse(result.injected, {
          method: x.method,
          status,
          statusMessage: upstreamRes.statusMessage,
          headers: responseHeaders,
        })
      : null;
    if (scrubbed?.kind === 'refuse') {
      finished = true;
      stopWatching();
      upstreamRes.destroy();
      logUpstreamError(ctx, x, scrubbed.reason);
      sendProxyError(res, 502, upstreamErrorBody(x, scrubbed.reason), !req.complete);
      return;
    }
    if (scrubbed) responseHeaders = scrubbed.headers;
    // Upstream answered without ever asking for the body: the client is not going to send it.
    if (expectContinue && !continued && !req.complete) responseHeaders.push(['Connection', 'close']);
    res.writeHead(status, scrubbed ? scrubbed.statusMessage : upstreamRes.statusMessage, flatten(responseHeaders));
    let bytesOut = 0;
    // pipe rather than pipeline: pipeline builds an AbortController per call, a measurable cost per request.
    let settled = false;
    const settle = (err: Error | null) => {
      if (settled) return;
      settled = true;
      const abandoned = finished;
      finished = true;
      stopWatching();
      if (abandoned) return;
      if (err) {
        upstreamRes.destroy();
        res.destroy();
        logUpstreamError(ctx, x, `response interrupted after ${bytesOut} bytes: ${describeUpstreamError(err)}`);
        return;
      }
      const annotations = scrubbed ? [...result.annotations, ...scrubbed.annotations()] : result.annotations;
      logAllowed(ctx, x, admission, { status, bytesIn, bytesOut, annotations });
    };
    upstreamRes.on('error', settle);
    res.on('finish', () => settle(null));
    res.on('close', () => {
      if (!res.writableFinished) settle(new Error('the client closed the connection'));
    });
    const body = scrubbed ? scrubbed.body(upstreamRes, settle) : upstreamRes;
    body.on('data', (chunk: Buffer) => {
      bytesOut += chunk.length;
    });
    body.pipe(res);
  };

  let current = dispatch(true);
  res.on('close', () => {
    if (!res.writableFinished) current.destroy();
  });
  if (streamsBody) {
    const source: Readable = result.bodyTransform ? req.pipe(result.bodyTransform()) : req;
    if (source !== req) source.on('error', (err) => current.destroy(err));
    req.on('data', (chunk: Buffer) => {
      bytesIn += chunk.length;
    });
    req.on('error', () => current.destroy());
    source.pipe(current);
  }
}

/** Wires the proxy's behaviour onto one listener's server (plain or TLS, on 80, 443 or a port the policy names). */
export function attachProxyHandlers(server: Server, listener: Listener, ctx: HttpContext): void {
  // The answer in progress on each connection. Node goes on parsing pipelined requests behind an answer that will
  // close the connection, and never sends theirs: such a request is not forwarded (nor logged), since the
  // upstream would act on it while nobody learns what it did.
  const answering = new WeakMap<object, ServerResponse>();
  const onRequest = (expectContinue: boolean) => (req: IncomingMessage, res: ServerResponse) => {
    if (answering.get(req.socket)?.shouldKeepAlive === false) {
      req.resume();
      return;
    }
    answering.set(req.socket, res);
    handleRequest(ctx, listener, req, res, expectContinue).catch((err: unknown) => {
      sendProxyError(
        res,
        500,
        { error: 'proxy_error', method: req.method ?? '-', host: '', path: '', reason: (err as Error).name },
        true,
      );
    });
  };
  server.on('request', onRequest(false));
  server.on('checkContinue', onRequest(true));
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => socket.destroy());
    const refusal = admitIncoming(ctx, listener, req);
    const x = exchangeFor(listener, req, refusal);
    x.url = req.url ?? '-';
    if (refusal.kind === 'deny') {
      logRefusal(ctx, x, refusal);
      writeRawRefusal(socket, refusal, x.method);
    } else socket.destroy();
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    forwardUpgrade(ctx, listener, req, socket, head);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    writeRawJson(socket, status, JSON.stringify({ error: 'bad_request', reason: err.code ?? 'malformed request' }));
  });
}
