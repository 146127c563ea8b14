import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import { describeUpstreamError } from '../upstream/connector.js';
import { logAllowed, logUpstreamError, type HttpContext } from './exchange.js';
import { flatten, pairsFromRaw, withoutHopByHop } from './headers.js';
import type { Http1Peer } from './peers.js';
import { scrubResponse, type ScrubbedResponse } from './scrubbed-response.js';
import { failExchange, type ForwardableExchange } from './stages.js';
import { upstreamHead } from './upstream-head.js';

/**
 * The last two stages for an HTTP/1.1 request: forward it upstream (the head upstream-head.ts writes, the body the
 * proxy holds or the client's stream) and relay the answer with backpressure, mapped back through the response
 * scrubber when the request carried a real value. A failure before the answer starts takes the pipeline's one
 * failure path (stages.ts `failExchange`); one after it can only cut the exchange and say so in the log.
 */

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

/**
 * Where an exchange stands once it is sent: waiting for the upstream's answer, relaying it, or over (answered,
 * failed, or cut off because the client connection closed). Whatever happens after `over` is ignored.
 */
type ForwardState = 'awaiting-answer' | 'relaying' | 'over';

export function forwardRequest(ctx: HttpContext, forwardable: ForwardableExchange, peer: Http1Peer): void {
  const { exchange, admission, route, credentials, body } = forwardable;
  const { req, res } = peer;
  const askForBody = peer.awaitingContinue && body === null;
  // A body the proxy holds travels with its own length; a streamed one with the framing Node read it by.
  const head = upstreamHead({
    method: exchange.method,
    authority: admission.authority,
    port: route.port,
    credentials,
    framing: body !== null ? { kind: 'length', bytes: body.length } : peer.framing(),
    expectContinue: askForBody,
  });
  const headers = flatten(head.headers);
  const streamsBody = body === null && peer.announced;
  let bytesIn = body?.length ?? 0;
  let state: ForwardState = 'awaiting-answer';
  // Nobody could learn what the upstream did with a request sent after its client connection closed.
  if (req.socket.destroyed) return;
  // Node drops an answer queued behind one that ended the connection (a parse error after it, `Connection:
  // close`): the exchange ends there for the sandbox, and the log says so rather than nothing.
  const stopWatching = whenConnectionCloses(req.socket, () => {
    if (state === 'over') return;
    state = 'over';
    current.destroy();
    logUpstreamError(ctx, exchange, 'the client connection closed before the answer was sent');
  });
  const end = () => {
    state = 'over';
    stopWatching();
  };

  const dispatch = (retry: boolean): ClientRequest => {
    const upstream = ctx.connector.request({
      tls: exchange.listener.scheme === 'https',
      address: route.address,
      port: head.port,
      host: admission.host,
      method: head.method,
      target: head.target,
      headers,
    });
    // The upstream asked for the body the client is holding back: the client may send it now.
    if (askForBody) upstream.on('continue', () => peer.sendContinue());
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (state !== 'awaiting-answer') return;
      // A pooled connection the upstream closed while idle: safe to retry once when no body was streamed.
      if (retry && upstream.reusedSocket && !streamsBody && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
        current = dispatch(false);
        return;
      }
      end();
      failExchange(ctx, exchange, peer, { status: 502, error: 'upstream_error', reason: describeUpstreamError(err) });
    });
    upstream.on('response', (answer) => relay(answer));
    if (body !== null) upstream.end(body);
    else if (!streamsBody) upstream.end();
    return upstream;
  };

  const relay = (answer: IncomingMessage) => {
    state = 'relaying';
    const status = answer.statusCode ?? 502;
    let responseHeaders = withoutHopByHop(pairsFromRaw(answer.rawHeaders));
    // A host that received a real value may echo it: mapped back to what the sandbox sent. Other hosts skip this.
    const scrubbed: ScrubbedResponse | null = credentials.injected
      ? scrubResponse(credentials.injected, {
          method: exchange.method,
          status,
          statusMessage: answer.statusMessage,
          headers: responseHeaders,
        })
      : null;
    if (scrubbed?.kind === 'refuse') {
      end();
      answer.destroy();
      failExchange(ctx, exchange, peer, { status: 502, error: 'upstream_error', reason: scrubbed.reason });
      return;
    }
    if (scrubbed) responseHeaders = scrubbed.headers;
    // Upstream answered without ever asking for the body: the client is not going to send it.
    if (peer.awaitingContinue && !req.complete) responseHeaders.push(['Connection', 'close']);
    res.writeHead(status, scrubbed ? scrubbed.statusMessage : answer.statusMessage, flatten(responseHeaders));
    let bytesOut = 0;
    // pipe rather than pipeline: pipeline builds an AbortController per call, a measurable cost per request.
    const settle = (err: Error | null) => {
      if (state === 'over') return;
      end();
      if (err) {
        answer.destroy();
        res.destroy();
        logUpstreamError(ctx, exchange, `response interrupted after ${bytesOut} bytes: ${describeUpstreamError(err)}`);
        return;
      }
      const annotations = scrubbed ? [...credentials.annotations, ...scrubbed.annotations()] : credentials.annotations;
      logAllowed(ctx, exchange, admission, { status, bytesIn, bytesOut, annotations });
    };
    answer.on('error', settle);
    res.on('finish', () => settle(null));
    res.on('close', () => {
      if (!res.writableFinished) settle(new Error('the client closed the connection'));
    });
    const relayed = scrubbed ? scrubbed.body(answer, settle) : answer;
    relayed.on('data', (chunk: Buffer) => {
      bytesOut += chunk.length;
    });
    relayed.pipe(res);
  };

  let current = dispatch(true);
  res.on('close', () => {
    if (!res.writableFinished) current.destroy();
  });
  if (streamsBody) {
    const source: Readable = credentials.bodyTransform ? req.pipe(credentials.bodyTransform()) : req;
    if (source !== req) source.on('error', (err) => current.destroy(err));
    req.on('data', (chunk: Buffer) => {
      bytesIn += chunk.length;
    });
    req.on('error', () => current.destroy());
    source.pipe(current);
  }
}
