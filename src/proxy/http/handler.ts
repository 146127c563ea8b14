import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Listener } from './admission.js';
import { describeExchange, type HttpContext } from './exchange.js';
import { forwardRequest } from './forward.js';
import { Http1Peer, requestFrom, SocketPeer } from './peers.js';
import { sendProxyError, writeRawJson } from './responses.js';
import { admitStage, deny, runStages } from './stages.js';
import { forwardUpgrade } from './upgrade.js';

/**
 * The enforcement point: every request the sandbox makes on the HTTP or HTTPS listener comes through here and runs
 * the pipeline's stages (stages.ts): admitted or refused, body filtered, routed, credentials swapped, then streamed
 * to the upstream and back with backpressure (forward.ts). Blocked requests never reach the credential passes or
 * the network.
 */

async function handleRequest(ctx: HttpContext, listener: Listener, peer: Http1Peer): Promise<void> {
  const forwardable = await runStages(ctx, requestFrom(listener, peer.req, peer), peer, { filtersBody: true });
  if (forwardable) forwardRequest(ctx, forwardable, peer);
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
    const peer = new Http1Peer(req, res, expectContinue, ctx.limits);
    handleRequest(ctx, listener, peer).catch((err: unknown) => {
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
    const peer = new SocketPeer(socket);
    const request = requestFrom(listener, req, peer.body);
    // Admission refuses every CONNECT: the sandbox has no HTTP proxy to tunnel through.
    const admitted = admitStage(ctx, request);
    if (admitted.kind !== 'deny') {
      socket.destroy();
      return;
    }
    const exchange = { ...describeExchange(request, admitted.refusal), url: req.url ?? '-' };
    deny(ctx, exchange, peer, admitted.refusal);
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
