import zlib from 'node:zlib';
import type { Allowlist, GraphqlRule } from '../../protocol/allowlist.js';
import {
  checkGraphqlOperation,
  checkGraphqlUrl,
  GRAPHQL_MAX_BODY_BYTES,
  GRAPHQL_TOO_LARGE,
  graphqlEntryHint,
  graphqlHint,
  type GraphqlVerdict,
} from '../../protocol/graphql-operations.js';
import {
  isMessagesRequest,
  TOOL_DOMAINS_MAX_BODY_BYTES,
  TOOLS_TOO_LARGE,
  trimToolDomains,
  type ToolDomainsVerdict,
} from '../../protocol/tool-domains.js';
import { FIXES, type Admission, type Refusal, type WouldBlock } from './admission.js';

/**
 * The proxy's side of the body filters (GraphQL operations, Anthropic tool domains): read the body (bounded),
 * undo its Content-Encoding once (bounded, so a small compressed body cannot expand into a large one) and hand
 * the result to the pure checkers. An encoding the proxy cannot undo is refused: forwarding a body a filter did
 * not read would defeat it.
 */

const DECODERS: Record<string, ((buf: Buffer, opts: zlib.ZlibOptions) => Buffer) | null> = {
  identity: null,
  gzip: zlib.gunzipSync,
  'x-gzip': zlib.gunzipSync,
  deflate: zlib.inflateSync,
  br: zlib.brotliDecompressSync,
};

/** The body with its Content-Encoding undone, 'too-large' past `maxBytes` decoded, or why it cannot be decoded. */
export function decodeBody(
  body: Buffer,
  contentEncoding: string | undefined,
  maxBytes: number,
): Buffer | 'too-large' | { error: string } {
  const codings = (contentEncoding ?? '')
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter(Boolean);
  let out = body;
  // Codings are listed in the order they were applied; undo them last first.
  for (const coding of codings.reverse()) {
    if (!Object.hasOwn(DECODERS, coding)) return { error: `content-encoding "${coding}" cannot be inspected` };
    const decode = DECODERS[coding];
    if (!decode) continue;
    try {
      out = decode(out, { maxOutputLength: maxBytes + 1 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return 'too-large';
      return { error: `the ${coding} body does not decode` };
    }
  }
  return out;
}

/** The body filters an admitted request must pass. */
export interface BodyFilters {
  /** The matched entry's `graphql` block. */
  graphql: GraphqlRule | undefined;
  /** An Anthropic Messages request: its server-side tools are narrowed. */
  messages: boolean;
}

/** Which body filters apply, or null when none does (most requests: they keep streaming their body). */
export function bodyFiltersFor(admission: Admission): BodyFilters | null {
  const rule = admission.decision?.rule;
  const graphql = rule?.kind === 'url_prefix' ? rule.entry.graphql : undefined;
  const messages = isMessagesRequest(admission.host, admission.target);
  return graphql === undefined && !messages ? null : { graphql, messages };
}

/** A body the filters read and passed. */
export interface InspectedBody {
  /** The body to forward in place of the request stream. */
  body: Buffer;
  /** True when `body` was rewritten decoded and must travel without Content-Encoding. */
  decoded: boolean;
  annotations: string[];
  /** Audit mode: the GraphQL filter's refusal, not enforced. */
  wouldBlock?: WouldBlock;
}

/** Most bytes the filters read: a larger body is refused, never forwarded unread. */
export function inspectionLimit(filters: BodyFilters): number {
  return filters.messages ? TOOL_DOMAINS_MAX_BODY_BYTES : GRAPHQL_MAX_BODY_BYTES;
}

export type BodyVerdict = { kind: 'refuse'; refusal: Refusal } | ({ kind: 'pass' } & InspectedBody);

/**
 * Judges a body already read (or cut off at the bound): the GraphQL operation filter, then the tool-domain
 * filter, on one decoding of it. Pure apart from the zlib calls.
 */
export function judgeBody(
  raw: Buffer | 'too-large',
  contentEncoding: string | undefined,
  admission: Admission,
  filters: BodyFilters,
  allowlist: Allowlist,
  audit = false,
): BodyVerdict {
  const refuse = (
    code: Refusal['code'],
    reason: string,
    advice: { hint?: string; fix?: string; rule?: string },
  ): BodyVerdict => ({
    kind: 'refuse',
    refusal: { kind: 'deny', status: 403, code, host: admission.host, path: admission.target, reason, ...advice },
  });
  let wouldBlock: WouldBlock | undefined;
  const decoded = raw === 'too-large' ? raw : decodeBody(raw, contentEncoding, inspectionLimit(filters));
  const annotations: string[] = [];
  if (filters.graphql !== undefined) {
    const verdict: GraphqlVerdict =
      checkGraphqlUrl(admission.target) ??
      (decoded === 'too-large'
        ? GRAPHQL_TOO_LARGE
        : Buffer.isBuffer(decoded)
          ? checkGraphqlOperation(decoded, filters.graphql)
          : { allowed: false, detail: '<unparseable>', reason: decoded.error });
    if (!verdict.allowed) {
      const rule = admission.decision?.rule;
      const hint = rule?.kind === 'url_prefix' ? graphqlEntryHint(rule.entry, verdict) : undefined;
      const refusal = {
        code: 'graphql_operation_blocked' as const,
        reason: `GraphQL operation '${verdict.detail}' is not allowed by ${admission.rule}: ${verdict.reason}`,
        rule: admission.rule,
        ...(hint !== undefined ? { hint } : {}),
      };
      // Audit mode lets a policy refusal through — when the body was read whole, so it can still be forwarded.
      if (!audit || raw === 'too-large') {
        return refuse(refusal.code, refusal.reason, { ...refusal, fix: graphqlHint(verdict, admission.rule) });
      }
      wouldBlock = refusal;
    } else {
      annotations.push(`graphql-op: ${verdict.type}/${verdict.fields[0]}`);
    }
  }
  let tools: ToolDomainsVerdict = { kind: 'pass' };
  if (filters.messages) {
    tools =
      decoded === 'too-large'
        ? TOOLS_TOO_LARGE
        : Buffer.isBuffer(decoded)
          ? trimToolDomains(decoded, allowlist)
          : { kind: 'block', code: 'tool_config_invalid', reason: decoded.error };
    if (tools.kind === 'block') return refuse(tools.code, tools.reason, { fix: FIXES[tools.code]! });
  }
  // Every filter refuses a body it could not read whole, so `raw` is complete here.
  if (raw === 'too-large') {
    return refuse('tool_config_too_large', 'the body is too large to inspect', { fix: FIXES.tool_config_too_large! });
  }
  const audited = wouldBlock ? { wouldBlock } : {};
  if (tools.kind !== 'rewrite') return { kind: 'pass', body: raw, decoded: false, annotations, ...audited };
  if (tools.annotation !== null) annotations.push(tools.annotation);
  return { kind: 'pass', body: Buffer.from(tools.body), decoded: true, annotations, ...audited };
}
