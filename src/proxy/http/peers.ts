import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Listener, Refusal } from './admission.js';
import type { ExchangeFailure, ExchangePeer, ExchangeRequest, HttpLimits, RequestBody } from './exchange.js';
import { hasRequestBody, pairsFromRaw } from './headers.js';
import { sendProxyError, sendRefusal, writeRawJson, writeRawRefusal, type ProxyErrorBody } from './responses.js';
import { framingOf, type BodyFraming } from './upstream-head.js';

/**
 * The protocol sides of an exchange on an HTTP/1.1 connection: a request answered with a ServerResponse, and a
 * socket Node handed over (an upgrade or CONNECT) answered with raw bytes.
 */

function sniOf(listener: Listener, req: IncomingMessage): string | null {
  if (listener.scheme !== 'https') return null;
  const name = (req.socket as TLSSocket).servername;
  return typeof name === 'string' && name !== '' ? name : null;
}

/** Node's parsed request as the stages see it. */
export function requestFrom(listener: Listener, req: IncomingMessage, body: RequestBody): ExchangeRequest {
  return {
    listener,
    method: req.method ?? '',
    rawTarget: req.url ?? '',
    headers: pairsFromRaw(req.rawHeaders),
    sni: sniOf(listener, req),
    body,
  };
}

export function readBounded(req: IncomingMessage, maxBytes: number): Promise<Buffer | 'too-large' | 'aborted'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        req.off('data', onData);
        req.resume();
        resolve('too-large');
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks, size)));
    req.on('error', () => resolve('aborted'));
    req.on('aborted', () => resolve('aborted'));
  });
}

/** One request on an HTTP/1.1 connection: its body comes from the IncomingMessage, its answer goes on the response. */
export class Http1Peer implements ExchangePeer, RequestBody {
  readonly announced: boolean;
  /** The client sent `Expect: 100-continue` and has not been told to go on: its body is not on the wire yet. */
  awaitingContinue: boolean;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    expectsContinue: boolean,
    private readonly limits: HttpLimits,
  ) {
    this.announced = hasRequestBody(req.headers);
    this.awaitingContinue = expectsContinue;
  }

  framing(): BodyFraming {
    return framingOf(this.req.headers);
  }

  /** Tells a client waiting for `100 Continue` to send its body (once). */
  sendContinue(): void {
    if (!this.awaitingContinue) return;
    this.awaitingContinue = false;
    this.res.writeContinue();
  }

  read(maxBytes: number): Promise<Buffer | 'too-large' | 'aborted'> {
    this.sendContinue();
    return this.announced ? readBounded(this.req, maxBytes) : Promise.resolve(Buffer.alloc(0));
  }

  refuse(refusal: Refusal, method: string, record: (uploadBytesDiscarded: number) => void): void {
    const { req, res } = this;
    // A client waiting for 100 Continue has not sent its body: answer now and close rather than wait for it.
    if (this.awaitingContinue || !this.announced || req.complete) {
      record(0);
      sendRefusal(res, refusal, method, this.awaitingContinue && !req.complete);
      return;
    }
    let drained = 0;
    let answered = false;
    const answer = (complete: boolean) => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      record(drained);
      sendRefusal(res, refusal, method, !complete);
    };
    const timer = setTimeout(() => answer(false), this.limits.drainTimeoutMs);
    timer.unref();
    req.on('data', (chunk: Buffer) => {
      drained += chunk.length;
      if (drained > this.limits.drainBytes) answer(false);
    });
    req.on('end', () => answer(true));
    req.on('error', () => answer(false));
  }

  fail(failure: ExchangeFailure, body: ProxyErrorBody): void {
    sendProxyError(this.res, failure.status, body, failure.closeConnection ?? !this.req.complete);
  }

  abandon(): void {
    this.res.destroy();
  }
}

/** Nothing to read: an upgrade handshake or CONNECT carries no body the proxy forwards. */
const NO_BODY: RequestBody = {
  announced: false,
  framing: () => ({ kind: 'none' }),
  read: () => Promise.resolve(Buffer.alloc(0)),
};

/** A socket Node handed over for an upgrade or CONNECT: no ServerResponse exists, answers are written raw. */
export class SocketPeer implements ExchangePeer {
  readonly body = NO_BODY;

  constructor(readonly socket: Duplex) {}

  refuse(refusal: Refusal, method: string, record: (uploadBytesDiscarded: number) => void): void {
    record(0);
    writeRawRefusal(this.socket, refusal, method);
  }

  fail(failure: ExchangeFailure, body: ProxyErrorBody): void {
    writeRawJson(this.socket, failure.status, JSON.stringify(body));
  }

  abandon(): void {
    this.socket.destroy();
  }
}
