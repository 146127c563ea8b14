import { ADDRESS_GUARD_FIX } from '../../protocol/address-guard.js';
import type { Allowlist } from '../../protocol/allowlist.js';
import { refusalClass, type DenyCode } from '../../protocol/deny-codes.js';
import {
  DEFAULT_PORTS,
  decide,
  describeRule,
  explicitPort,
  formatAuthority,
  normalizeHost,
  type Decision,
  type Scheme,
} from '../../protocol/policy.js';

/**
 * The order of checks a request passes before anything leaves the proxy (airut-behaviour.md §4b, with its bugs
 * fixed): CONNECT, TRACE/TRACK, malformed Host, end-to-end headers named in `Connection`, host agreement (SNI,
 * Host, absolute-form target), port agreement, then path validation and the allowlist through the shared policy
 * engine. Pure, so every branch is unit-tested.
 */

/** Where the sandbox connected: a port of the proxy, and whether that connection speaks TLS. */
export interface Listener {
  scheme: Scheme;
  /** The port the sandbox connected to (443, 80, or one an allowlist entry names). */
  port: number;
}

export interface AdmissionRequest {
  listener: Listener;
  method: string;
  /** The request target exactly as on the request line (origin-form, absolute-form or `*`). */
  rawTarget: string;
  /** Every Host header value, in order (more than one is malformed). */
  hostHeaders: readonly string[];
  /** TLS SNI on the HTTPS listener; null when the client sent none or on plain HTTP. */
  sni: string | null;
  /** Every `Connection` header value, in order. */
  connection: readonly string[];
  /** Headers a credential pass reads or writes (lower-case names): `Connection` may not name them either. */
  credentialHeader?: (lowerName: string) => boolean;
}

export interface Refusal {
  kind: 'deny';
  status: 400 | 403;
  code: DenyCode | 'bad_request';
  host: string;
  path: string;
  reason: string;
  /** The allowlist entry that would permit the request: YAML, ready to paste under `url_prefixes:`. */
  hint?: string;
  /** What to do instead, in words, when no allowlist entry helps (or beside the hint). */
  fix?: string;
  /** The entry that decided the refusal (it matched host and path but not the method, or its GraphQL filter). */
  rule?: string;
}

/** Audit mode: the policy refusal a request got, though it was let through. */
export interface WouldBlock {
  code: DenyCode;
  reason: string;
  hint?: string;
  rule?: string;
}

export interface Admission {
  kind: 'allow';
  /** Normalised host (lower-case, no port, no trailing dot). */
  host: string;
  /** The Host header as sent. */
  hostHeader: string;
  /** The port judged: the listener's, which the Host (and an absolute-form target) had to agree with. */
  port: number;
  /** The Host the proxy sends upstream: the judged host and port, written canonically. */
  authority: string;
  /** Origin-form target forwarded upstream. */
  target: string;
  /** The entry that allowed it ('' when only audit mode let it through). */
  rule: string;
  /** Absent when only audit mode let the request through (no entry matched, so no entry's body filter applies). */
  decision?: Extract<Decision, { allowed: true }>;
  /** Audit mode: the policy refusal the request would have got. */
  wouldBlock?: WouldBlock;
}

/** What a refused request can do about it when no allowlist entry would help. */
export const FIXES: Partial<Record<Refusal['code'], string>> = {
  connect_not_allowed:
    'the sandbox has no HTTP proxy: make direct requests (https://host/…); the network routes them through airlock',
  trace_not_allowed: 'TRACE and TRACK are never forwarded; use another method',
  host_mismatch: 'send the same host in the TLS SNI, the Host header and the URL (no domain fronting)',
  missing_host: 'send a Host header (and TLS SNI on HTTPS) naming the server',
  invalid_path: 'remove `..` segments, backslashes and NUL bytes from the path (after percent-decoding)',
  invalid_host: 'use a valid DNS name or IP literal',
  upstream_address_not_allowed: ADDRESS_GUARD_FIX,
  port_mismatch:
    'connect to the port the URL names: the proxy takes the upstream port from the connection and the policy, never from the request',
  connection_header_not_allowed:
    'list only hop-by-hop headers in Connection (keep-alive, close, upgrade, te, or headers of your own)',
  upgrade_not_allowed:
    'only WebSocket upgrades are forwarded (GET, Upgrade: websocket, a 16-byte Sec-WebSocket-Key, version 13); speak HTTP/1.1 otherwise',
  bad_request: 'send exactly one Host header',
  tool_config_too_large: 'send smaller Messages requests (upload large files with the Files API)',
  tool_config_invalid: 'send the Messages request as JSON (identity, gzip, deflate or br encoding)',
  blocklist_tool_config_unsupported:
    'replace blocked_domains with allowed_domains; domains the allowlist does not open for GET are removed',
  wildcard_tool_domain_unsupported:
    'list plain host names in allowed_domains; those the allowlist does not open for GET are removed',
};

/**
 * End-to-end headers `Connection` may never name. A conforming proxy drops what `Connection` lists, so naming one
 * of these would strip the request's framing (its body then reads as a second request), its Host (the upstream's
 * default virtual host answers), a credential or a header a rule inspects after the proxy judged it.
 */
const END_TO_END = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'content-encoding',
  'authorization',
  'cookie',
]);

/** The first end-to-end header a `Connection` value names, or null. */
export function endToEndNamedByConnection(
  connection: readonly string[],
  credentialHeader: (lowerName: string) => boolean = () => false,
): string | null {
  for (const value of connection) {
    for (const token of value.split(',')) {
      const name = token.trim().toLowerCase();
      if (END_TO_END.has(name) || name.startsWith('x-amz-') || (name !== '' && credentialHeader(name))) return name;
    }
  }
  return null;
}

/** Splits an absolute-form target into its authority and origin-form rest, or null for origin-form and `*`. */
export function splitAbsoluteForm(rawTarget: string): { authority: string; target: string } | null {
  const m = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/([^/?#]*)(.*)$/.exec(rawTarget);
  if (!m) return null;
  const rest = m[2]!;
  return { authority: m[1]!, target: rest === '' ? '/' : rest.startsWith('?') ? '/' + rest : rest };
}

/**
 * Admission of one request. With `audit`, a refusal for policy reasons (the allowlist does not list the request,
 * `refusalClass` in deny-codes.ts) becomes an admission that carries it as `wouldBlock`; every check before the
 * allowlist — CONNECT, TRACE, host agreement, path validation — refuses as always.
 */
export function admit(request: AdmissionRequest, allowlist: Allowlist, audit = false): Admission | Refusal {
  const method = request.method.toUpperCase();
  const absolute = splitAbsoluteForm(request.rawTarget);
  const target = absolute ? absolute.target : request.rawTarget;
  const hostHeader = request.hostHeaders[0];
  const shownHost = hostHeader ?? request.sni ?? absolute?.authority ?? '';
  const refuse = (code: Refusal['code'], reason: string, status: 400 | 403 = 403): Refusal => ({
    kind: 'deny',
    status,
    code,
    host: shownHost,
    path: target,
    reason,
    ...(FIXES[code] ? { fix: FIXES[code] } : {}),
  });

  if (method === 'CONNECT') return refuse('connect_not_allowed', 'CONNECT tunnelling is not allowed');
  if (method === 'TRACE' || method === 'TRACK') {
    return refuse('trace_not_allowed', `${method} would echo the request, credentials included, back to the sandbox`);
  }
  if (request.hostHeaders.length > 1) return refuse('bad_request', 'the request has more than one Host header', 400);
  if (hostHeader === undefined || hostHeader.trim() === '') {
    return refuse('missing_host', 'the request has no Host header');
  }
  const named = endToEndNamedByConnection(request.connection, request.credentialHeader);
  if (named !== null) {
    return refuse(
      'connection_header_not_allowed',
      `the Connection header names ${named}, an end-to-end header the proxy never removes`,
      400,
    );
  }
  const { listener } = request;
  const host = normalizeHost(hostHeader);
  if (listener.scheme === 'https') {
    if (request.sni === null) return refuse('host_mismatch', 'the TLS handshake named no server (no SNI)');
    const sniHost = normalizeHost(request.sni);
    if (sniHost === null || sniHost !== host) {
      return refuse('host_mismatch', `TLS SNI "${request.sni}" and Host "${hostHeader}" name different hosts`);
    }
  }
  if (absolute) {
    const authorityHost = absolute.authority.includes('@') ? null : normalizeHost(absolute.authority);
    if (authorityHost === null || authorityHost !== host) {
      return refuse(
        'host_mismatch',
        `the request target names "${absolute.authority}" but the Host header names "${hostHeader}"`,
      );
    }
  }
  if (host !== null) {
    // The port is the listener's: a request that names another is refused, never followed.
    const named = [
      { what: `Host "${hostHeader}"`, port: explicitPort(hostHeader) ?? DEFAULT_PORTS[listener.scheme] },
      ...(absolute ? [{ what: `the target "${request.rawTarget}"`, port: explicitPort(absolute.authority) }] : []),
    ];
    for (const { what, port } of named) {
      if (port !== null && port !== listener.port) {
        return refuse(
          'port_mismatch',
          `${what} names port ${port}, but the connection was made to port ${listener.port}`,
        );
      }
    }
  }
  const decision = decide(
    { method, host: hostHeader, target, scheme: listener.scheme, port: listener.port },
    allowlist,
  );
  const admitted = {
    kind: 'allow' as const,
    host: decision.host,
    hostHeader,
    port: listener.port,
    authority: formatAuthority(decision.host, listener.port, listener.scheme),
    target,
  };
  if (!decision.allowed) {
    const details = {
      reason: decision.reason,
      ...(decision.hint !== undefined ? { hint: decision.hint } : {}),
      ...(decision.rule ? { rule: describeRule(decision.rule) } : {}),
    };
    if (audit && refusalClass(decision.code) === 'policy') {
      return { ...admitted, rule: '', wouldBlock: { code: decision.code, ...details } };
    }
    return {
      kind: 'deny',
      status: 403,
      code: decision.code,
      host: decision.host,
      path: decision.path,
      ...details,
      ...(FIXES[decision.code] ? { fix: FIXES[decision.code] } : {}),
    };
  }
  return { ...admitted, rule: describeRule(decision.rule), decision };
}
