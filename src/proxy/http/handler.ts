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
import { flatten, hasRequestBody, pairsFromRaw, setHeader, withoutHopByHop, type HeaderPairs } from './headers.js';
import { sendProxyError, sendRefusal, writeRawJson, writeRawRefusal } from './responses.js';
import { scrubResponse } from './scrubbed-response.js';
import { forwardUpgrade } from './upgrade.js';

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
  const admission = admitIncoming(listener, req, ctx.allowlist);
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

function upstreamHeaders(req: IncomingMessage, result: CredentialResult, body: Buffer | null): HeaderPairs {
  let headers = result.headers;
  if (body !== null) {
    headers = setHeader(setHeader(headers, 'Expect', null), 'Content-Length', String(body.length));
  } else if (req.headers['transfer-encoding'] !== undefined) {
    // Re-framed chunked on this hop (Node de-chunks what it reads); Content-Length never travels beside it.
    headers = setHeader(setHeader(headers, 'Content-Length', null), 'Transfer-Encoding', 'chunked');
  }
  return headers;
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
  const headers = flatten(upstreamHeaders(req, result, body));
  const streamsBody = body === null && hasRequestBody(req.headers);
  let bytesIn = body?.length ?? 0;
  let responded = false;
  let finished = false;
  let continued = false;

  const dispatch = (retry: boolean): ClientRequest => {
    const upstream = ctx.connector.request({
      tls: x.listener === 'https',
      address: route.address,
      port: route.port,
      host: admission.host,
      method: x.method,
      target: result.target,
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
      finished = true;
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

/** Wires the proxy's behaviour onto one listener's server (HTTP on 80 or HTTPS on 443). */
export function attachProxyHandlers(server: Server, listener: Listener, ctx: HttpContext): void {
  const onRequest = (expectContinue: boolean) => (req: IncomingMessage, res: ServerResponse) => {
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
    const refusal = admitIncoming(listener, req, ctx.allowlist);
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
