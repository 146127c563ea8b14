import type { IncomingMessage, ServerResponse } from 'node:http';
import zlib from 'node:zlib';
import type { Allowlist, GraphqlRule } from '../../protocol/allowlist.js';
import {
  checkGraphqlOperation,
  checkGraphqlUrl,
  GRAPHQL_MAX_BODY_BYTES,
  graphqlHint,
  type GraphqlVerdict,
} from '../../protocol/graphql-operations.js';
import {
  isMessagesRequest,
  TOOL_DOMAINS_MAX_BODY_BYTES,
  trimToolDomains,
  type ToolDomainsVerdict,
} from '../../protocol/tool-domains.js';
import { FIXED_HINTS, type Admission, type Refusal } from './admission.js';
import { hasRequestBody } from './headers.js';

/**
 * The proxy's side of the body filters (GraphQL operations, Anthropic tool domains): undo the request's
 * Content-Encoding (bounded, so a small compressed body cannot expand into a large one) and hand the result to
 * the pure checkers. An encoding the proxy cannot undo is refused: forwarding a body a filter did not read would
 * defeat it.
 */

const DECODERS: Record<string, ((buf: Buffer, opts: zlib.ZlibOptions) => Buffer) | null> = {
  identity: null,
  gzip: zlib.gunzipSync,
  'x-gzip': zlib.gunzipSync,
  deflate: zlib.inflateSync,
  br: zlib.brotliDecompressSync,
};

export function decodeBody(
  body: Buffer,
  contentEncoding: string | undefined,
  maxBytes: number,
): Buffer | { error: string } {
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
      const tooLarge = (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE';
      return { error: tooLarge ? 'too-large' : `the ${coding} body does not decode` };
    }
  }
  return out;
}

export const GRAPHQL_TOO_LARGE: Extract<GraphqlVerdict, { allowed: false }> = {
  allowed: false,
  detail: '<too-large>',
  reason: `the GraphQL request body is over ${GRAPHQL_MAX_BODY_BYTES} bytes`,
};

export function inspectGraphqlBody(
  body: Buffer | 'too-large',
  contentEncoding: string | undefined,
  rule: GraphqlRule,
): GraphqlVerdict {
  if (body === 'too-large') return GRAPHQL_TOO_LARGE;
  const decoded = decodeBody(body, contentEncoding, GRAPHQL_MAX_BODY_BYTES);
  if (!Buffer.isBuffer(decoded)) {
    return decoded.error === 'too-large'
      ? GRAPHQL_TOO_LARGE
      : { allowed: false, detail: '<unparseable>', reason: decoded.error };
  }
  return checkGraphqlOperation(decoded, rule);
}

const TOOLS_TOO_LARGE: ToolDomainsVerdict = {
  kind: 'block',
  code: 'tool_config_too_large',
  reason: `the Messages request is over ${TOOL_DOMAINS_MAX_BODY_BYTES} bytes; its tools cannot be checked`,
};

/** The tool-domain filter on a raw body. A rewritten body is sent without Content-Encoding. */
export function applyToolDomains(
  body: Buffer | 'too-large',
  contentEncoding: string | undefined,
  allowlist: Allowlist,
): ToolDomainsVerdict {
  if (body === 'too-large') return TOOLS_TOO_LARGE;
  const decoded = decodeBody(body, contentEncoding, TOOL_DOMAINS_MAX_BODY_BYTES);
  if (!Buffer.isBuffer(decoded)) {
    return decoded.error === 'too-large'
      ? TOOLS_TOO_LARGE
      : { kind: 'block', code: 'tool_config_invalid', reason: decoded.error };
  }
  return trimToolDomains(decoded, allowlist);
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

export type FilterOutcome =
  | { kind: 'aborted' }
  | { kind: 'refuse'; refusal: Refusal }
  | {
      kind: 'pass';
      /** The body to forward instead of streaming the request, when a filter read it. */
      body: Buffer | null;
      /** True when `body` is decoded and must travel without Content-Encoding. */
      decoded: boolean;
      annotations: string[];
      /** 100 Continue already sent to the client (to read the body). */
      continueSent: boolean;
    };

export const NO_FILTERS: Extract<FilterOutcome, { kind: 'pass' }> = Object.freeze({
  kind: 'pass',
  body: null,
  decoded: false,
  annotations: [],
  continueSent: false,
});

/** Whether any body filter applies: the matched entry has a `graphql` block, or it is an Anthropic Messages call. */
export function bodyFiltersApply(admission: Admission): boolean {
  const rule = admission.decision.rule;
  return (
    (rule.kind === 'url_prefix' && rule.entry.graphql !== undefined) ||
    isMessagesRequest(admission.host, admission.target)
  );
}

/**
 * Runs the body filters that apply to an admitted request: the GraphQL operation filter when the matched entry
 * has a `graphql` block, then the tool-domain filter on Anthropic Messages requests. Nothing is read when neither
 * applies, so ordinary requests keep streaming.
 */
export async function runBodyFilters(
  allowlist: Allowlist,
  req: IncomingMessage,
  res: ServerResponse,
  admission: Admission,
  expectContinue: boolean,
): Promise<FilterOutcome> {
  const rule = admission.decision.rule;
  const graphqlRule = rule.kind === 'url_prefix' ? rule.entry.graphql : undefined;
  const messages = isMessagesRequest(admission.host, admission.target);
  if (graphqlRule === undefined && !messages) return NO_FILTERS;
  if (expectContinue) res.writeContinue();
  const limit = messages ? TOOL_DOMAINS_MAX_BODY_BYTES : GRAPHQL_MAX_BODY_BYTES;
  const raw = hasRequestBody(req.headers) ? await readBounded(req, limit) : Buffer.alloc(0);
  if (raw === 'aborted') return { kind: 'aborted' };
  const encoding = req.headers['content-encoding'];
  const refuse = (code: Refusal['code'], reason: string, hint: string): FilterOutcome => ({
    kind: 'refuse',
    refusal: { kind: 'deny', status: 403, code, host: admission.host, path: admission.target, reason, hint },
  });
  const annotations: string[] = [];
  let body: Buffer | 'too-large' = raw;
  let decoded = false;
  if (graphqlRule !== undefined) {
    const size = raw === 'too-large' ? Infinity : raw.length;
    const verdict =
      checkGraphqlUrl(admission.target) ??
      inspectGraphqlBody(size > GRAPHQL_MAX_BODY_BYTES ? 'too-large' : raw, encoding, graphqlRule);
    if (!verdict.allowed) {
      return refuse(
        'graphql_operation_blocked',
        `GraphQL operation '${verdict.detail}' is not allowed by ${admission.rule}: ${verdict.reason}`,
        graphqlHint(verdict, admission.rule),
      );
    }
    annotations.push(`graphql-op: ${verdict.type}/${verdict.fields[0]}`);
  }
  if (messages) {
    const verdict = applyToolDomains(body, encoding, allowlist);
    if (verdict.kind === 'block') return refuse(verdict.code, verdict.reason, FIXED_HINTS[verdict.code]!);
    if (verdict.kind === 'rewrite') {
      body = Buffer.from(verdict.body);
      decoded = true;
      if (verdict.annotation !== null) annotations.push(verdict.annotation);
    }
  }
  // 'too-large' always ends in a refusal above; the check keeps the type honest.
  if (body === 'too-large') return refuse('tool_config_too_large', 'the body is too large to inspect', '');
  return { kind: 'pass', body, decoded, annotations, continueSent: expectContinue };
}
