/**
 * The request methods the proxy's HTTP parser (Node's llhttp) accepts, letters only. A request with any other method
 * is answered 400 by the parser before the allowlist is consulted, so an allowlist method outside this list can never
 * match anything: the policy linter reports it (a unit test keeps the list equal to `http.METHODS`).
 */
export const HTTP_METHODS: readonly string[] = [
  'ACL',
  'BIND',
  'CHECKOUT',
  'CONNECT',
  'COPY',
  'DELETE',
  'GET',
  'HEAD',
  'LINK',
  'LOCK',
  'MERGE',
  'MKACTIVITY',
  'MKCALENDAR',
  'MKCOL',
  'MOVE',
  'NOTIFY',
  'OPTIONS',
  'PATCH',
  'POST',
  'PROPFIND',
  'PROPPATCH',
  'PURGE',
  'PUT',
  'QUERY',
  'REBIND',
  'REPORT',
  'SEARCH',
  'SOURCE',
  'SUBSCRIBE',
  'TRACE',
  'UNBIND',
  'UNLINK',
  'UNLOCK',
  'UNSUBSCRIBE',
];

/** Methods the proxy refuses whatever the allowlist says (deny codes `connect_not_allowed`, `trace_not_allowed`). */
export const NEVER_FORWARDED_METHODS: readonly string[] = ['CONNECT', 'TRACE', 'TRACK'];
