/**
 * The network log: one event per DNS query, request decision, upstream failure and credential action. Two
 * renderings of the same events — Airut's text lines (airut-behaviour.md §4 items 101-113, for people and for
 * `--network-log-live`) and versioned JSONL (for machines). Events carry names, paths and decisions only: the HTTP
 * layer never hands header values or bodies to the log, so no secret can reach it. Documented in docs/network-log.md.
 */

export const NETWORK_LOG_VERSION = 1;

export type NetworkEvent =
  | { event: 'start'; ts: Date; runId?: string; policySha256?: string; baseCommit?: string }
  | { event: 'dns'; ts: Date; transport: string; type: string; name: string; answer: string | null }
  | RequestEvent
  | {
      event: 'error';
      ts: Date;
      method: string;
      url: string;
      host: string;
      /** The port the sandbox connected to. */
      port?: number;
      path: string;
      reason: string;
      durationMs: number;
    }
  /** A TLS handshake on the HTTPS listener that failed or was refused (no SNI, untrusted CA, bad name). */
  | { event: 'tls'; ts: Date; servername: string | null; code: 'host_mismatch' | 'handshake_failed'; reason: string }
  /** A loud line from the credential passes (STRIPPED, COLLAPSED, clock-skew warnings). */
  | { event: 'credential'; ts: Date; line: string };

export interface RequestEvent {
  event: 'request';
  ts: Date;
  /** `would_block`: audit mode let through a request the allowlist refuses (`code` says why). */
  decision: 'allowed' | 'blocked' | 'would_block';
  method: string;
  /** The URL as the sandbox sent it (surrogates, never real values). */
  url: string;
  host: string;
  /** The port the sandbox connected to: the one judged (a request naming another is refused). */
  port?: number;
  path: string;
  status: number;
  /** `allowed` or a deny code. */
  code: string;
  /**
   * The allowlist entry that decided: the one that allowed the request (`domains[0] *.github.com`), or for a refusal
   * the one that matched host and path but not the method or its GraphQL filter.
   */
  rule?: string;
  reason?: string;
  /** For a refusal: the allowlist entry that would permit the request, as YAML to paste under `url_prefixes:`. */
  hint?: string;
  /** Request body bytes received from the sandbox. */
  bytesIn: number;
  /** Response body bytes sent back to the sandbox. */
  bytesOut: number;
  durationMs: number;
  annotations: string[];
}

export interface NetworkLog {
  write(event: NetworkEvent): void;
}

/** `2026-01-02T03:04:05Z`, the precision Airut's start line uses. */
export function utcSeconds(ts: Date): string {
  return ts.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * Control characters (CR/LF above all) never reach a line: a name or path could otherwise forge a log line. They
 * are written as `\xNN`.
 */
function oneLine(s: string): string {
  return s.replace(/[\x00-\x1f\x7f]/g, (c) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'));
}

function bracketed(annotations: readonly string[]): string {
  return annotations.map((a) => ` [${oneLine(a)}]`).join('');
}

/** Airut's text line for an event. */
export function formatTextLine(e: NetworkEvent): string {
  switch (e.event) {
    case 'start':
      return `=== TASK START ${utcSeconds(e.ts)} ===`;
    case 'dns':
      return e.answer === null
        ? `DNS ${oneLine(e.type)} ${oneLine(e.name)} -> NOERROR (no records)`
        : `DNS ${oneLine(e.type)} ${oneLine(e.name)} -> ${oneLine(e.answer)}`;
    case 'request': {
      const verdict = e.decision === 'allowed' ? 'ALLOWED' : e.decision === 'blocked' ? 'BLOCKED' : 'WOULD_BLOCK';
      const code = e.decision === 'allowed' ? '' : ` (${e.code})`;
      return `${verdict} ${oneLine(e.method)} ${oneLine(e.url)} -> ${e.status}${code}${bracketed(e.annotations)}`;
    }
    case 'error':
      return `ERROR ${oneLine(e.method)} ${oneLine(e.url)} -> ${oneLine(e.reason)}`;
    case 'tls':
      return e.code === 'host_mismatch'
        ? `BLOCKED TLS ${oneLine(e.servername ?? '(no SNI)')} -> handshake refused (host_mismatch)`
        : `ERROR TLS ${oneLine(e.servername ?? '(no SNI)')} -> ${oneLine(e.reason)}`;
    case 'credential':
      return oneLine(e.line);
  }
}

/**
 * The JSONL record for an event: snake_case keys, `v` first, timestamps in ISO 8601 with milliseconds. Each record
 * is one object literal: V8 builds `{ ...base, <a dozen keys> }` on a slow path, ~45 µs a request line against ~2
 * µs written out (this runs once per request).
 */
export function formatJsonLine(e: NetworkEvent): string {
  const v = NETWORK_LOG_VERSION;
  const ts = e.ts.toISOString();
  switch (e.event) {
    case 'start':
      return JSON.stringify({
        v,
        ts,
        event: 'start',
        run_id: e.runId,
        policy_sha256: e.policySha256,
        base_commit: e.baseCommit,
      });
    case 'dns':
      return JSON.stringify({
        v,
        ts,
        event: 'dns',
        transport: e.transport,
        type: e.type,
        name: e.name,
        answer: e.answer,
      });
    case 'request':
      return JSON.stringify({
        v,
        ts,
        event: 'request',
        decision: e.decision,
        method: e.method,
        url: e.url,
        host: e.host,
        port: e.port ?? null,
        path: e.path,
        status: e.status,
        code: e.code,
        rule: e.rule ?? null,
        reason: e.reason ?? null,
        hint: e.hint ?? null,
        bytes_in: e.bytesIn,
        bytes_out: e.bytesOut,
        duration_ms: e.durationMs,
        annotations: e.annotations,
      });
    case 'error':
      return JSON.stringify({
        v,
        ts,
        event: 'error',
        decision: 'error',
        method: e.method,
        url: e.url,
        host: e.host,
        port: e.port ?? null,
        path: e.path,
        reason: e.reason,
        duration_ms: e.durationMs,
      });
    case 'tls':
      return JSON.stringify({
        v,
        ts,
        event: 'tls',
        decision: e.code === 'host_mismatch' ? 'blocked' : 'error',
        servername: e.servername,
        code: e.code,
        reason: e.reason,
      });
    case 'credential':
      return JSON.stringify({ v, ts, event: 'credential', line: e.line });
  }
}

/** Anything that accepts lines (a file stream, stdout). */
export interface LineSink {
  write(chunk: string): unknown;
}

/** Writes each event as a text line and/or a JSONL record. */
export function lineLog(sinks: { text?: LineSink; json?: LineSink }): NetworkLog {
  return {
    write(event) {
      sinks.text?.write(formatTextLine(event) + '\n');
      sinks.json?.write(formatJsonLine(event) + '\n');
    },
  };
}

/** Collects events in memory — what tests read. */
export function memoryLog(): NetworkLog & { events: NetworkEvent[] } {
  const events: NetworkEvent[] = [];
  return { events, write: (e) => void events.push(e) };
}

export function fanOut(...logs: NetworkLog[]): NetworkLog {
  return { write: (e) => logs.forEach((l) => l.write(e)) };
}

export const silentLog: NetworkLog = { write: () => undefined };
