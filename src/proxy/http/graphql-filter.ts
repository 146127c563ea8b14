import zlib from 'node:zlib';
import type { GraphqlRule } from '../../protocol/allowlist.js';
import {
  checkGraphqlOperation,
  GRAPHQL_MAX_BODY_BYTES,
  type GraphqlVerdict,
} from '../../protocol/graphql-operations.js';

/**
 * The proxy's side of the GraphQL operation filter: undo the request's Content-Encoding (bounded, so a small
 * compressed body cannot expand into a large one) and hand the JSON to the pure checker. An encoding the proxy
 * cannot undo is refused: forwarding a body the filter did not read would defeat it.
 */

const DECODERS: Record<string, ((buf: Buffer, opts: zlib.ZlibOptions) => Buffer) | null> = {
  identity: null,
  gzip: zlib.gunzipSync,
  'x-gzip': zlib.gunzipSync,
  deflate: zlib.inflateSync,
  br: zlib.brotliDecompressSync,
};

export function decodeBody(body: Buffer, contentEncoding: string | undefined): Buffer | { error: string } {
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
      out = decode(out, { maxOutputLength: GRAPHQL_MAX_BODY_BYTES + 1 });
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
  const tooLarge = GRAPHQL_TOO_LARGE;
  if (body === 'too-large') return tooLarge;
  const decoded = decodeBody(body, contentEncoding);
  if (!Buffer.isBuffer(decoded)) {
    return decoded.error === 'too-large' ? tooLarge : { allowed: false, detail: '<unparseable>', reason: decoded.error };
  }
  return checkGraphqlOperation(decoded, rule);
}

