import type { Allowlist } from '../../protocol/allowlist.js';
import type { DenyCode } from '../../protocol/deny-codes.js';
import { decide, describeRule, normalizeHost, type Decision } from '../../protocol/policy.js';

/**
 * The order of checks a request passes before anything leaves the proxy (airut-behaviour.md §4b, with its bugs
 * fixed): CONNECT, TRACE/TRACK, malformed Host, host agreement (SNI, Host, absolute-form target), then path
 * validation and the allowlist through the shared policy engine. Pure, so every branch is unit-tested.
 */

export type Listener = 'http' | 'https';

export interface AdmissionRequest {
  listener: Listener;
  method: string;
  /** The request target exactly as on the request line (origin-form, absolute-form or `*`). */
  rawTarget: string;
  /** Every Host header value, in order (more than one is malformed). */
  hostHeaders: readonly string[];
  /** TLS SNI on the HTTPS listener; null when the client sent none or on plain HTTP. */
  sni: string | null;
}

export interface Refusal {
  kind: 'deny';
  status: 400 | 403;
  code: DenyCode | 'bad_request';
  host: string;
  path: string;
  reason: string;
  hint?: string;
}

export interface Admission {
  kind: 'allow';
  /** Normalised host (lower-case, no port, no trailing dot). */
  host: string;
  /** The Host header as sent. */
  hostHeader: string;
  /** Upstream port: the Host header's, else the listener's default. */
  port: number;
  /** Origin-form target forwarded upstream. */
  target: string;
  rule: string;
  decision: Extract<Decision, { allowed: true }>;
}

/** What a refused request can do about it when no allowlist entry would help. */
export const FIXED_HINTS: Partial<Record<Refusal['code'], string>> = {
  connect_not_allowed:
    'the sandbox has no HTTP proxy: make direct requests (https://host/…); the network routes them through airlock',
  trace_not_allowed: 'TRACE and TRACK are never forwarded; use another method',
  host_mismatch: 'send the same host in the TLS SNI, the Host header and the URL (no domain fronting)',
  missing_host: 'send a Host header (and TLS SNI on HTTPS) naming the server',
  invalid_path: 'remove `..` segments, backslashes and NUL bytes from the path (after percent-decoding)',
  invalid_host: 'use a valid DNS name or IP literal',
  upstream_address_not_allowed:
    'the name resolves to an internal address; map it explicitly in sandbox.yaml `upstream_hosts` if that is intended',
  bad_request: 'send exactly one Host header',
  tool_config_too_large: 'send smaller Messages requests (upload large files with the Files API)',
  tool_config_invalid: 'send the Messages request as JSON (identity, gzip, deflate or br encoding)',
  blocklist_tool_config_unsupported:
    'replace blocked_domains with allowed_domains; domains the allowlist does not open for GET are removed',
  wildcard_tool_domain_unsupported:
    'list plain host names in allowed_domains; those the allowlist does not open for GET are removed',
};

const DEFAULT_PORT: Record<Listener, number> = { http: 80, https: 443 };

function portOf(hostHeader: string, listener: Listener): number {
  const m = hostHeader.startsWith('[') ? /\]:(\d{1,5})$/.exec(hostHeader) : /^[^:]*:(\d{1,5})$/.exec(hostHeader);
  const port = m ? Number(m[1]) : 0;
  return port >= 1 && port <= 65535 ? port : DEFAULT_PORT[listener];
}

/** Splits an absolute-form target into its authority and origin-form rest, or null for origin-form and `*`. */
export function splitAbsoluteForm(rawTarget: string): { authority: string; target: string } | null {
  const m = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/([^/?#]*)(.*)$/.exec(rawTarget);
  if (!m) return null;
  const rest = m[2]!;
  return { authority: m[1]!, target: rest === '' ? '/' : rest.startsWith('?') ? '/' + rest : rest };
}

export function admit(request: AdmissionRequest, allowlist: Allowlist): Admission | Refusal {
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
    ...(FIXED_HINTS[code] ? { hint: FIXED_HINTS[code] } : {}),
  });

  if (method === 'CONNECT') return refuse('connect_not_allowed', 'CONNECT tunnelling is not allowed');
  if (method === 'TRACE' || method === 'TRACK') {
    return refuse('trace_not_allowed', `${method} would echo the request, credentials included, back to the sandbox`);
  }
  if (request.hostHeaders.length > 1) return refuse('bad_request', 'the request has more than one Host header', 400);
  if (hostHeader === undefined || hostHeader.trim() === '') {
    return refuse('missing_host', 'the request has no Host header');
  }
  const host = normalizeHost(hostHeader);
  if (request.listener === 'https') {
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
  const decision = decide({ method, host: hostHeader, target }, allowlist);
  if (!decision.allowed) {
    return {
      kind: 'deny',
      status: 403,
      code: decision.code,
      host: decision.host,
      path: decision.path,
      reason: decision.reason,
      ...((decision.hint ?? FIXED_HINTS[decision.code]) ? { hint: decision.hint ?? FIXED_HINTS[decision.code] } : {}),
    };
  }
  return {
    kind: 'allow',
    host: decision.host,
    hostHeader,
    port: portOf(hostHeader, request.listener),
    target,
    rule: describeRule(decision.rule),
    decision,
  };
}
