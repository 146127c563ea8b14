import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Refusal } from './admission.js';

/**
 * The proxy's own answers. A denial is an answer the sandboxed program can act on: machine-readable code, the
 * host and path as judged, a one-line reason, the allowlist entry that would permit it (`hint`, YAML to paste under
 * `url_prefixes:`) and, where no entry helps, what to do instead (`fix`). None of them echoes a
 * header value, so no credential can come back through them.
 */

export const DENY_HEADER = 'X-Airlock-Deny';

export function refusalBody(refusal: Refusal, method: string): string {
  return JSON.stringify({
    error: refusal.status === 400 ? 'bad_request' : 'blocked_by_network_allowlist',
    code: refusal.code,
    method,
    host: refusal.host,
    path: refusal.path,
    reason: refusal.reason,
    hint: refusal.hint ?? null,
    fix: refusal.fix ?? null,
  });
}

export interface ProxyErrorBody {
  error: 'upstream_error' | 'request_body_too_large' | 'proxy_error';
  method: string;
  host: string;
  path: string;
  reason: string;
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: string,
  extra: Record<string, string>,
  close: boolean,
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string | number> = {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
    ...extra,
  };
  if (close) headers['Connection'] = 'close';
  res.shouldKeepAlive = res.shouldKeepAlive && !close;
  res.writeHead(status, headers);
  res.end(body);
}

export function sendRefusal(res: ServerResponse, refusal: Refusal, method: string, close: boolean): void {
  sendJson(res, refusal.status, refusalBody(refusal, method), { [DENY_HEADER]: refusal.code }, close);
}

export function sendProxyError(
  res: ServerResponse,
  status: 413 | 500 | 502,
  body: ProxyErrorBody,
  close: boolean,
): void {
  sendJson(res, status, JSON.stringify(body), {}, close);
}

const REASON_PHRASES: Record<number, string> = { 400: 'Bad Request', 403: 'Forbidden', 502: 'Bad Gateway' };

/** The same answers on a raw socket, for CONNECT and refused WebSocket upgrades (no ServerResponse exists). */
export function writeRawJson(socket: Duplex, status: number, body: string, extra: Record<string, string> = {}): void {
  const head = [
    `HTTP/1.1 ${status} ${REASON_PHRASES[status] ?? 'Error'}`,
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...Object.entries(extra).map(([k, v]) => `${k}: ${v}`),
    '',
    '',
  ].join('\r\n');
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(head + body);
  // Nothing reads this socket any more (Node handed it over for an upgrade or CONNECT): whatever the client still
  // sends is read and dropped, so its close is seen, and a client that never closes is cut off after a while.
  socket.resume();
  const linger = setTimeout(() => socket.destroy(), RAW_ANSWER_LINGER_MS);
  linger.unref();
  socket.once('close', () => clearTimeout(linger));
}

/** How long a connection answered on the raw socket may stay open for the client to read the answer and close. */
const RAW_ANSWER_LINGER_MS = 10_000;

export function writeRawRefusal(socket: Duplex, refusal: Refusal, method: string): void {
  writeRawJson(socket, refusal.status, refusalBody(refusal, method), { [DENY_HEADER]: refusal.code });
}
