import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { isIPv4, isIPv6 } from '../../protocol/policy.js';

/**
 * Opens requests to upstream servers over keep-alive pools. TLS is verified against Node's root store plus the
 * configured extra CAs, with the request's host as the name to check — the vetted IP is where we connect, the
 * name is what the certificate must prove.
 */

export interface UpstreamConnectorOptions {
  /** Extra PEM CAs trusted on top of the system roots. */
  caPem?: string;
  /** Limit on TCP connect plus TLS handshake. */
  connectTimeoutMs: number;
  /** Limit on silence from upstream while a request is in flight. */
  idleTimeoutMs: number;
}

export interface UpstreamRequestSpec {
  tls: boolean;
  address: string;
  port: number;
  /** Name the upstream certificate must be valid for. */
  host: string;
  method: string;
  target: string;
  headers: string[];
  /** WebSocket handshakes get a dedicated connection: it leaves the pool once upgraded. */
  dedicated?: boolean;
}

export interface UpstreamConnector {
  request(spec: UpstreamRequestSpec): http.ClientRequest;
  close(): void;
}

export class UpstreamTimeoutError extends Error {
  readonly code = 'UPSTREAM_TIMEOUT';
}

/**
 * Idle upstream connections are kept for reuse, but bounded: at most 64 per upstream name, each closed after 30 s
 * unused, so a burst or a walk over many hosts does not leave connections (and their TLS buffers) behind.
 */
const POOL = {
  keepAlive: true,
  keepAliveMsecs: 1000,
  maxFreeSockets: 64,
  timeout: 30_000,
  scheduling: 'lifo' as const,
};

/** Real services send large cookies and CSP headers; Node's 16 KiB default would turn those into 502s. */
export const MAX_HEADER_BYTES = 64 * 1024;

export function createUpstreamConnector(options: UpstreamConnectorOptions): UpstreamConnector {
  // A SecureContext, not `ca`: the agent folds `ca` into every pool key, which is a 200 kB string per request.
  const secureContext = tls.createSecureContext({
    ca: options.caPem ? [...tls.rootCertificates, options.caPem] : [...tls.rootCertificates],
  });
  const httpAgent = new http.Agent(POOL);
  const httpsAgent = new https.Agent(POOL);

  function request(spec: UpstreamRequestSpec): http.ClientRequest {
    const agent = spec.dedicated ? false : spec.tls ? httpsAgent : httpAgent;
    // One object literal, no spreads: V8 builds `{ ...common, more }` on a slow path (~15 µs a request).
    const requestOptions: https.RequestOptions & { secureContext?: tls.SecureContext } = {
      host: spec.address,
      port: spec.port,
      method: spec.method,
      path: spec.target,
      headers: spec.headers,
      setHost: false,
      maxHeaderSize: MAX_HEADER_BYTES,
      agent,
    };
    let req: http.ClientRequest;
    if (spec.tls) {
      requestOptions.secureContext = secureContext;
      // SNI must be a name; for an IP-literal host the certificate is checked against the IP instead.
      if (!(isIPv4(spec.host) || isIPv6(spec.host))) requestOptions.servername = spec.host;
      requestOptions.checkServerIdentity = (_host, cert) => tls.checkServerIdentity(spec.host, cert);
      req = https.request(requestOptions);
    } else req = http.request(requestOptions);

    req.on('socket', (socket) => {
      // Node's https client leaves Nagle on (its http client and servers turn it off): a request whose head and
      // body are separate writes would wait for the upstream's delayed ACK. (Node skips the call once it is set.)
      socket.setNoDelay(true);
      // A pooled socket is already connected; a new one gets the connect (and handshake) deadline.
      if (!socket.connecting) {
        armIdle();
        return;
      }
      const timer = setTimeout(() => {
        req.destroy(new UpstreamTimeoutError(`no connection within ${options.connectTimeoutMs} ms`));
      }, options.connectTimeoutMs);
      timer.unref();
      socket.once(spec.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        armIdle();
      });
      socket.once('close', () => clearTimeout(timer));
    });
    function armIdle(): void {
      req.setTimeout(options.idleTimeoutMs, () => {
        req.destroy(new UpstreamTimeoutError(`upstream silent for ${options.idleTimeoutMs} ms`));
      });
    }
    return req;
  }

  return {
    request,
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}

/** A one-line, value-free description of why an upstream exchange failed. */
export function describeUpstreamError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  switch (e.code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ECONNRESET':
      return 'connection reset by upstream';
    case 'EPIPE':
      return 'upstream closed the connection';
    case 'ETIMEDOUT':
    case 'UPSTREAM_TIMEOUT':
      return `timed out: ${e.message ?? ''}`.trim();
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'upstream unreachable';
    default:
      break;
  }
  if (e.code && /CERT|SELF_SIGNED|SIGNATURE|ALTNAME|ISSUER/.test(e.code)) return `bad certificate (${e.code})`;
  if (e.code?.startsWith('ERR_SSL') || e.code?.startsWith('ERR_TLS')) return `TLS failure (${e.code})`;
  return e.code ? `${e.code}: ${e.message ?? ''}` : (e.message ?? 'unknown error');
}
