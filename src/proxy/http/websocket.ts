import { createHash } from 'node:crypto';
import { headerValues, type HeaderPairs } from './headers.js';

/**
 * The only protocol the proxy lets a connection switch to is WebSocket, and only between a well-formed handshake
 * and an upstream that proves it accepted it (RFC 6455 §4). After an unchecked `101` the bytes that follow are
 * whatever the upstream makes of them — a server that answers 101 without switching, or speaks h2c, reads them as
 * new requests for any virtual host. Frames after a verified accept are not inspected (a documented limit).
 */

export const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export function websocketAccept(key: string): string {
  return createHash('sha1')
    .update(key + WEBSOCKET_GUID)
    .digest('base64');
}

/** The comma-separated tokens of every value of a header, trimmed and lower-cased. */
export function headerTokens(headers: HeaderPairs, name: string): string[] {
  return headerValues(headers, name)
    .flatMap((v) => v.split(','))
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t !== '');
}

export interface HandshakeProblem {
  status: 400 | 403;
  code: 'upgrade_not_allowed' | 'method_not_allowed';
  reason: string;
}

/** Why an upgrade request is not a WebSocket handshake the proxy forwards, or null when it is one. */
export function handshakeProblem(method: string, headers: HeaderPairs, hasBody: boolean): HandshakeProblem | null {
  const protocols = headerTokens(headers, 'upgrade');
  if (protocols.length !== 1 || protocols[0] !== 'websocket') {
    return {
      status: 403,
      code: 'upgrade_not_allowed',
      reason: `only WebSocket upgrades are forwarded, not "${protocols.join(', ')}"`,
    };
  }
  if (method !== 'GET') {
    return {
      status: 403,
      code: 'method_not_allowed',
      reason: `protocol upgrades are forwarded only on GET, not ${method}`,
    };
  }
  const malformed = (reason: string): HandshakeProblem => ({ status: 400, code: 'upgrade_not_allowed', reason });
  const keys = headerValues(headers, 'sec-websocket-key');
  const key = keys[0]?.trim() ?? '';
  // The nonce is 16 random bytes, base64-encoded (24 characters): anything else makes the accept meaningless.
  if (keys.length !== 1 || !/^[A-Za-z0-9+/]{22}==$/.test(key)) {
    return malformed('the handshake needs exactly one Sec-WebSocket-Key of 16 base64-encoded bytes');
  }
  const versions = headerValues(headers, 'sec-websocket-version');
  if (versions.length !== 1 || versions[0]!.trim() !== '13') {
    return malformed('the handshake needs Sec-WebSocket-Version: 13');
  }
  if (hasBody) return malformed('a WebSocket handshake carries no body');
  return null;
}

/**
 * Why the upstream's `101` does not accept the handshake sent with `key`, or null when it does: it must switch to
 * `websocket`, name `upgrade` in Connection, and carry exactly one Sec-WebSocket-Accept computed from the key.
 */
export function acceptProblem(key: string, status: number, headers: HeaderPairs): string | null {
  if (status !== 101) return `the upstream answered ${status} where a 101 was expected`;
  const protocols = headerTokens(headers, 'upgrade');
  if (protocols.length !== 1 || protocols[0] !== 'websocket') {
    return 'the upstream switched to something other than websocket';
  }
  if (!headerTokens(headers, 'connection').includes('upgrade')) return 'the upstream 101 lacks Connection: upgrade';
  const accepts = headerValues(headers, 'sec-websocket-accept');
  if (accepts.length !== 1 || accepts[0]!.trim() !== websocketAccept(key)) {
    return 'the upstream 101 carries no valid Sec-WebSocket-Accept for the key sent';
  }
  return null;
}
