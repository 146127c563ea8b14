/**
 * Stable, machine-readable reasons a request is refused. They appear in the 403 body (`code`), in the
 * `X-Airlock-Deny` response header, in the JSONL network log and in `airlock policy check`. Documented one by one
 * in docs/deny-codes.md; never rename one — users match on them.
 */
export const DENY_CODES = {
  host_not_allowed: 'the host matches no `domains` entry and no `url_prefixes` entry',
  path_not_allowed: 'the host has `url_prefixes` entries, but none matches this path',
  method_not_allowed: 'an entry matches host and path, but not this method',
  invalid_path: 'the path is malformed or tries to escape (NUL, backslash, `..` segment, after percent-decoding)',
  invalid_host: 'the host is not a valid DNS name or IP literal',
  connect_not_allowed: 'CONNECT tunnelling is never allowed: the proxy must see every request',
  trace_not_allowed: 'TRACE and TRACK echo request headers (and so credentials) back to the sender',
  host_mismatch: 'the TLS SNI, the Host header and the request target do not name the same host',
  missing_host: 'the request names no host (no SNI and no Host header)',
  port_mismatch:
    'the Host header or an absolute-form target names a port other than the one the connection was made to',
  port_not_allowed: 'the host is allowed, but not on this port: only an entry naming the port opens it',
  connection_header_not_allowed:
    'the `Connection` header names an end-to-end header (Host, framing, a credential or an inspected header)',
  upgrade_not_allowed:
    'a protocol upgrade other than WebSocket (`h2c`, …), or a WebSocket handshake that is not well-formed',
  upstream_address_not_allowed:
    'the host resolves to a loopback, private, link-local or metadata address that is not mapped in `upstream_hosts`',
  graphql_operation_blocked: "the GraphQL operation is not in the entry's `graphql` operation allowlist",
  tool_config_too_large: 'an Anthropic Messages request is too large (over 32 MiB) for its tools to be checked',
  tool_config_invalid: 'an Anthropic Messages request body is not JSON, or is in an encoding the proxy cannot read',
  blocklist_tool_config_unsupported:
    'a server-side Anthropic tool (web fetch, web search, …) uses `blocked_domains`, which cannot be narrowed',
  wildcard_tool_domain_unsupported: 'a server-side Anthropic tool allows a domain pattern rather than plain host names',
} as const;

export type DenyCode = keyof typeof DENY_CODES;

export function isDenyCode(value: string): value is DenyCode {
  return Object.hasOwn(DENY_CODES, value);
}

/**
 * Why a refusal happens, which decides what audit mode (`airlock run --audit`) does with it:
 * - `policy`: the allowlist does not list the request. Audit mode lets it through and logs it as `would_block`.
 * - `safety`: letting the request through would leak or escape whatever the allowlist says — tunnels and echoes
 *   (CONNECT, TRACE), names that disagree or are malformed (domain fronting, bad Host), path traversal, internal
 *   upstream addresses, Messages requests whose server-side tools cannot be judged. These stay refused in audit mode.
 * An exhaustive switch: a new deny code does not compile until it is classified.
 */
export function refusalClass(code: DenyCode): 'policy' | 'safety' {
  switch (code) {
    case 'host_not_allowed':
    case 'path_not_allowed':
    case 'method_not_allowed':
    case 'port_not_allowed':
    case 'graphql_operation_blocked':
      return 'policy';
    case 'invalid_path':
    case 'invalid_host':
    case 'connect_not_allowed':
    case 'trace_not_allowed':
    case 'host_mismatch':
    case 'missing_host':
    case 'port_mismatch':
    case 'connection_header_not_allowed':
    case 'upgrade_not_allowed':
    case 'upstream_address_not_allowed':
    case 'tool_config_too_large':
    case 'tool_config_invalid':
    case 'blocklist_tool_config_unsupported':
    case 'wildcard_tool_domain_unsupported':
      return 'safety';
  }
}
