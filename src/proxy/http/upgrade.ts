import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { describeUpstreamError } from '../upstream/connector.js';
import { FIXED_HINTS, type Listener, type Refusal } from './admission.js';
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
  type HttpContext,
} from './exchange.js';
import { flatten, hasRequestBody, headerValues, pairsFromRaw, withoutHopByHop, type HeaderPairs } from './headers.js';
import { bodyFiltersFor } from './body-filters.js';
import { writeRawJson, writeRawRefusal } from './responses.js';
import { scrubResponse } from './scrubbed-response.js';
import { upstreamHead } from './upstream-head.js';
import { acceptProblem, handshakeProblem } from './websocket.js';

/**
 * WebSocket on an allowed GET: the handshake passes the same admission and credential passes as a request, and
 * must be a well-formed WebSocket handshake (any other upgrade, h2c included, is refused). Both sockets are piped
 * raw only once the upstream's 101 is verified as a WebSocket accept for the key sent; until then nothing the
 * sandbox sends after the handshake reaches the upstream. The frames after it are not inspected, as with any
 * allowed response body.
 */

function headBlock(statusLine: string, headers: HeaderPairs): string {
  return statusLine + '\r\n' + headers.map(([n, v]) => `${n}: ${v}\r\n`).join('') + '\r\n';
}

export function forwardUpgrade(
  ctx: HttpContext,
  listener: Listener,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): void {
  socket.on('error', () => socket.destroy());
  const admission = admitIncoming(ctx, listener, req);
  const x = exchangeFor(listener, req, admission);
  const deny = (refusal: Refusal) => {
    logRefusal(ctx, x, refusal);
    writeRawRefusal(socket, refusal, x.method);
  };
  if (admission.kind === 'deny') return deny(admission);
  const requestHeaders = pairsFromRaw(req.rawHeaders);
  const problem = handshakeProblem(x.method, requestHeaders, hasRequestBody(req.headers));
  if (problem) {
    return deny({
      kind: 'deny',
      ...problem,
      host: admission.host,
      path: admission.target,
      hint:
        problem.code === 'method_not_allowed' ? 'open the WebSocket with a GET request' : FIXED_HINTS[problem.code]!,
    });
  }
  if (bodyFiltersFor(admission)?.graphql !== undefined) {
    // Operations would travel in frames after the handshake, where the filter cannot judge them.
    return deny({
      kind: 'deny',
      status: 403,
      code: 'graphql_operation_blocked',
      host: admission.host,
      path: admission.target,
      reason: `GraphQL operation '<unparseable>' is not allowed by ${admission.rule}: a protocol upgrade carries operations the filter cannot inspect`,
      hint: 'send GraphQL operations as POST requests to this entry',
    });
  }
  const key = headerValues(requestHeaders, 'sec-websocket-key')[0]!.trim();
  const upstreamError = (reason: string) => {
    logUpstreamError(ctx, x, reason);
    writeRawJson(
      socket,
      502,
      JSON.stringify({ error: 'upstream_error', method: x.method, host: x.host, path: x.path, reason }),
    );
  };

  void (async () => {
    const route = await ctx.route(admission.host, admission.port);
    if (route.kind === 'forbidden') return deny(addressRefusal(admission, route.reason));
    if (route.kind === 'failed') return upstreamError(route.reason);
    const requestHead = credentialHead(listener, req, x, admission);

    const prepared = await prepareCredentials(ctx, requestHead, () => Promise.resolve(Buffer.alloc(0)));
    if (prepared.kind === 'failed') return upstreamError(prepared.reason);
    logCredentialEvents(ctx, prepared.result);
    const forwarded = upstreamHead({
      method: 'GET',
      authority: admission.authority,
      port: route.port,
      credentials: prepared.result,
      framing: { kind: 'none' },
      websocket: true,
    });
    const upstream = ctx.connector.request({
      tls: listener.scheme === 'https',
      address: route.address,
      port: forwarded.port,
      host: admission.host,
      method: forwarded.method,
      target: forwarded.target,
      headers: flatten(forwarded.headers),
      dedicated: true,
    });
    socket.on('close', () => upstream.destroy());
    // Logged when the handshake is answered; the frames that follow are not counted.
    const logHandshake = (status: number, scrubbedAnnotations: string[] = []) =>
      logAllowed(ctx, x, admission, {
        status,
        bytesIn: 0,
        bytesOut: 0,
        annotations: [...prepared.result.annotations, ...scrubbedAnnotations],
      });
    upstream.on('error', (err) => {
      if (socket.writable) upstreamError(describeUpstreamError(err));
    });
    // The handshake's answer may echo the credential swapped in: its head (and a refusal's body) is mapped back.
    // Frames after a 101 are not: they are the allowed host's business, as docs/secrets.md says.
    const scrubbed = (upstreamRes: IncomingMessage, headers: HeaderPairs) =>
      prepared.result.injected
        ? scrubResponse(prepared.result.injected, {
            method: 'GET',
            status: upstreamRes.statusCode ?? 502,
            statusMessage: upstreamRes.statusMessage,
            headers,
          })
        : null;
    upstream.on('upgrade', (upstreamRes, upstreamSocket, upstreamHead) => {
      const responseHeaders = pairsFromRaw(upstreamRes.rawHeaders);
      const refused = acceptProblem(key, upstreamRes.statusCode ?? 0, responseHeaders);
      if (refused !== null) {
        // Not a WebSocket: whatever the sandbox sends next would be read by the upstream as something else.
        upstreamSocket.destroy();
        return upstreamError(refused);
      }
      // A 101 has no body, so it is never refused for its encoding.
      const scrubbedHead = scrubbed(upstreamRes, responseHeaders);
      const answer = scrubbedHead?.kind === 'relay' ? scrubbedHead : null;
      const message = answer ? answer.statusMessage : upstreamRes.statusMessage;
      socket.write(
        headBlock(`HTTP/1.1 101 ${message ?? 'Switching Protocols'}`, answer ? answer.headers : responseHeaders),
      );
      if (upstreamHead.length > 0) socket.write(upstreamHead);
      if (head.length > 0) upstreamSocket.write(head);
      upstreamSocket.on('error', () => socket.destroy());
      socket.on('error', () => upstreamSocket.destroy());
      upstreamSocket.on('close', () => socket.destroy());
      socket.on('close', () => upstreamSocket.destroy());
      upstreamSocket.pipe(socket);
      socket.pipe(upstreamSocket);
      logHandshake(101, answer?.annotations());
    });
    // The upstream declined the upgrade: relay its answer as a plain response and close.
    upstream.on('response', (upstreamRes) => {
      const answer = scrubbed(upstreamRes, withoutHopByHop(pairsFromRaw(upstreamRes.rawHeaders)));
      if (answer?.kind === 'refuse') {
        upstreamRes.destroy();
        return upstreamError(answer.reason);
      }
      const message = answer ? answer.statusMessage : upstreamRes.statusMessage;
      const status = `HTTP/1.1 ${upstreamRes.statusCode ?? 502} ${message ?? ''}`;
      const responseHeaders = answer ? answer.headers : withoutHopByHop(pairsFromRaw(upstreamRes.rawHeaders));
      responseHeaders.push(['Connection', 'close']);
      socket.write(headBlock(status, responseHeaders));
      if (!answer) {
        upstreamRes.pipe(socket);
        return logHandshake(upstreamRes.statusCode ?? 502);
      }
      const body = answer.body(upstreamRes, () => socket.destroy());
      body.pipe(socket);
      // Logged once the body has passed the scrubber, so the line counts what it replaced there too.
      let logged = false;
      const logOnce = () => {
        if (logged) return;
        logged = true;
        logHandshake(upstreamRes.statusCode ?? 502, answer.annotations());
      };
      body.once('end', logOnce);
      socket.once('close', logOnce);
    });
    upstream.end();
  })().catch(() => socket.destroy());
}
