import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { describeUpstreamError } from '../upstream/connector.js';
import { FIXES, type Admission, type Listener, type Refusal } from './admission.js';
import { logAllowed, type ExchangeRequest, type HttpContext } from './exchange.js';
import { flatten, hasRequestBody, headerValues, pairsFromRaw, withoutHopByHop, type HeaderPairs } from './headers.js';
import { bodyFiltersFor } from './body-filters.js';
import { requestFrom, SocketPeer } from './peers.js';
import { scrubResponse } from './scrubbed-response.js';
import { failExchange, runStages, type ForwardableExchange } from './stages.js';
import { upstreamHead } from './upstream-head.js';
import { acceptProblem, handshakeProblem } from './websocket.js';

/**
 * WebSocket on an allowed GET: the handshake passes the same stages as a request (stages.ts) and must be a
 * well-formed WebSocket handshake (any other upgrade, h2c included, is refused). Both sockets are piped raw only
 * once the upstream's 101 is verified as a WebSocket accept for the key sent; until then nothing the sandbox sends
 * after the handshake reaches the upstream. The frames after it are not inspected, as with any allowed response
 * body.
 */

function headBlock(statusLine: string, headers: HeaderPairs): string {
  return statusLine + '\r\n' + headers.map(([n, v]) => `${n}: ${v}\r\n`).join('') + '\r\n';
}

/** The upgrade's own check after admission: a WebSocket handshake, and no GraphQL filter it would bypass. */
function handshakeRefusal(admission: Admission, request: ExchangeRequest, hasBody: boolean): Refusal | null {
  const problem = handshakeProblem(request.method, request.headers, hasBody);
  if (problem) {
    return {
      kind: 'deny',
      ...problem,
      host: admission.host,
      path: admission.target,
      fix: problem.code === 'method_not_allowed' ? 'open the WebSocket with a GET request' : FIXES[problem.code]!,
    };
  }
  if (bodyFiltersFor(admission)?.graphql !== undefined) {
    // Operations would travel in frames after the handshake, where the filter cannot judge them.
    return {
      kind: 'deny',
      status: 403,
      code: 'graphql_operation_blocked',
      host: admission.host,
      path: admission.target,
      reason: `GraphQL operation '<unparseable>' is not allowed by ${admission.rule}: a protocol upgrade carries operations the filter cannot inspect`,
      fix: 'send GraphQL operations as POST requests to this entry',
    };
  }
  return null;
}

export function forwardUpgrade(
  ctx: HttpContext,
  listener: Listener,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): void {
  socket.on('error', () => socket.destroy());
  const peer = new SocketPeer(socket);
  const request = requestFrom(listener, req, peer.body);
  const hasBody = hasRequestBody(req.headers);
  runStages(ctx, request, peer, {
    check: (admission) => handshakeRefusal(admission, request, hasBody),
    filtersBody: false,
  })
    .then((forwardable) => {
      if (forwardable) forwardHandshake(ctx, forwardable, request, peer, head);
    })
    .catch(() => socket.destroy());
}

/** The last two stages for a handshake: send it upstream, verify the upstream's accept, then splice the sockets. */
function forwardHandshake(
  ctx: HttpContext,
  forwardable: ForwardableExchange,
  request: ExchangeRequest,
  peer: SocketPeer,
  head: Buffer,
): void {
  const { exchange, admission, route, credentials } = forwardable;
  const { socket } = peer;
  const key = headerValues(request.headers, 'sec-websocket-key')[0]!.trim();
  const upstreamError = (reason: string) =>
    failExchange(ctx, exchange, peer, { status: 502, error: 'upstream_error', reason });
  const forwarded = upstreamHead({
    method: 'GET',
    authority: admission.authority,
    port: route.port,
    credentials,
    framing: { kind: 'none' },
    websocket: true,
  });
  const upstream = ctx.connector.request({
    tls: exchange.listener.scheme === 'https',
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
    logAllowed(ctx, exchange, admission, {
      status,
      bytesIn: 0,
      bytesOut: 0,
      annotations: [...credentials.annotations, ...scrubbedAnnotations],
    });
  upstream.on('error', (err) => {
    if (socket.writable) upstreamError(describeUpstreamError(err));
  });
  // The handshake's answer may echo the credential swapped in: its head (and a refusal's body) is mapped back.
  // Frames after a 101 are not: they are the allowed host's business, as docs/secrets.md says.
  const scrubbed = (upstreamRes: IncomingMessage, headers: HeaderPairs) =>
    credentials.injected
      ? scrubResponse(credentials.injected, {
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
}
