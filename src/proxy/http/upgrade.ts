import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { describeUpstreamError } from '../upstream/connector.js';
import type { Listener, Refusal } from './admission.js';
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
import { flatten, headerValues, pairsFromRaw, withoutHopByHop, type HeaderPairs } from './headers.js';
import { bodyFiltersFor } from './body-filters.js';
import { writeRawJson, writeRawRefusal } from './responses.js';

/**
 * WebSocket (and any other HTTP/1.1 Upgrade) on an allowed GET: the handshake passes the same admission and
 * credential passes as a request, then both sockets are piped raw after the upstream's 101. Only the handshake is
 * inspected; the frames after it are the allowed host's business, as with any allowed response body.
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
  const admission = admitIncoming(listener, req, ctx.allowlist);
  const x = exchangeFor(listener, req, admission);
  const deny = (refusal: Refusal) => {
    logRefusal(ctx, x, refusal);
    writeRawRefusal(socket, refusal, x.method);
  };
  if (admission.kind === 'deny') return deny(admission);
  if (x.method !== 'GET') {
    return deny({
      kind: 'deny',
      status: 403,
      code: 'method_not_allowed',
      host: admission.host,
      path: admission.target,
      reason: `protocol upgrades are forwarded only on GET, not ${x.method}`,
      hint: 'open the WebSocket with a GET request',
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
    const upgradeTo = headerValues(pairsFromRaw(req.rawHeaders), 'upgrade')[0] ?? 'websocket';
    const headers: HeaderPairs = [...prepared.result.headers, ['Connection', 'Upgrade'], ['Upgrade', upgradeTo]];
    const upstream = ctx.connector.request({
      tls: listener === 'https',
      address: route.address,
      port: route.port,
      host: admission.host,
      method: 'GET',
      target: prepared.result.target,
      headers: flatten(headers),
      dedicated: true,
    });
    socket.on('close', () => upstream.destroy());
    // Logged when the handshake is answered; the frames that follow are not counted.
    const logHandshake = (status: number) =>
      logAllowed(ctx, x, admission, { status, bytesIn: 0, bytesOut: 0, annotations: prepared.result.annotations });
    upstream.on('error', (err) => {
      if (socket.writable) upstreamError(describeUpstreamError(err));
    });
    upstream.on('upgrade', (upstreamRes, upstreamSocket, upstreamHead) => {
      const status = `HTTP/1.1 ${upstreamRes.statusCode ?? 101} ${upstreamRes.statusMessage ?? 'Switching Protocols'}`;
      socket.write(headBlock(status, pairsFromRaw(upstreamRes.rawHeaders)));
      if (upstreamHead.length > 0) socket.write(upstreamHead);
      if (head.length > 0) upstreamSocket.write(head);
      upstreamSocket.on('error', () => socket.destroy());
      socket.on('error', () => upstreamSocket.destroy());
      upstreamSocket.on('close', () => socket.destroy());
      socket.on('close', () => upstreamSocket.destroy());
      upstreamSocket.pipe(socket);
      socket.pipe(upstreamSocket);
      logHandshake(upstreamRes.statusCode ?? 101);
    });
    // The upstream declined the upgrade: relay its answer as a plain response and close.
    upstream.on('response', (upstreamRes) => {
      const status = `HTTP/1.1 ${upstreamRes.statusCode ?? 502} ${upstreamRes.statusMessage ?? ''}`;
      const responseHeaders = withoutHopByHop(pairsFromRaw(upstreamRes.rawHeaders));
      responseHeaders.push(['Connection', 'close']);
      socket.write(headBlock(status, responseHeaders));
      upstreamRes.pipe(socket);
      logHandshake(upstreamRes.statusCode ?? 502);
    });
    upstream.end();
  })().catch(() => socket.destroy());
}
