import { globMatcher, isGlob } from '../../protocol/fnmatch.js';
import type { CredentialConfig } from '../../protocol/proxy-wire.js';
import { resignAwsRequest, type SigningTrace } from './aws/resign.js';
import { applyMaskedSecrets } from './masked.js';
import { acceptingIdentity } from './response-scrubber.js';
import type { CredentialProcessor, CredentialResult, RequestHead } from './types.js';

export type { SigningTrace } from './aws/resign.js';

export interface CredentialProcessorOptions {
  /** The proxy's clock, for the clock-skew warning only (signing keeps the client's X-Amz-Date). */
  now?: () => Date;
  /** Cap on a body buffered to hash it for a signature that covers it (non-S3 services without x-amz-content-sha256). */
  maxDeferredBody?: number;
  /** Cap on one aws-chunked chunk held while it is re-signed. */
  maxChunkBytes?: number;
  /** Sees each AWS signing input (canonical request, string to sign); for debug logging and conformance tests. */
  onSigned?: (trace: SigningTrace) => void;
}

const DEFAULT_MAX_DEFERRED_BODY = 16 * 1024 * 1024;
/** S3 caps aws-chunked chunks well below this in practice; SDKs use 64 KiB to 8 MiB. */
const DEFAULT_MAX_CHUNK_BYTES = 16 * 1024 * 1024;

/**
 * The credential pass for one run: AWS re-signing first (a SigV4/SigV4A Authorization header or presigned query with
 * a known surrogate key id, on a host in that credential's scopes), and masked-secret replacement for every other
 * request. A re-signed request skips the masked pass, as in Airut: its credentials are already real
 * (docs/aws-signing.md#what-is-re-signed).
 */
export function createCredentialProcessor(
  config: CredentialConfig,
  opts: CredentialProcessorOptions = {},
): CredentialProcessor {
  const options = {
    now: opts.now ?? (() => new Date()),
    maxDeferredBody: opts.maxDeferredBody ?? DEFAULT_MAX_DEFERRED_BODY,
    maxChunkBytes: opts.maxChunkBytes ?? DEFAULT_MAX_CHUNK_BYTES,
    keyCache: new Map(),
    ...(opts.onSigned ? { trace: opts.onSigned } : {}),
  };
  const process: CredentialProcessor = (head) => {
    if (head.scheme === 'http' && config.signing.length > 0) {
      // A re-signed request carries the real key id (and session token) in clear: never over plain HTTP, as for
      // masked secrets. The surrogate-signed request goes on unchanged and the upstream refuses it.
      const key = surrogateKeyIn(head, config);
      if (key !== null) {
        const masked = applyMaskedSecrets(head, config.masked);
        const path = head.target.split('?')[0] ?? '/';
        masked.events.unshift(
          `NOT RESIGNED AWS request with surrogate key ${key.slice(0, 4)}… for ${head.method} http://${head.host}${path} (real credentials are only sent over HTTPS)`,
        );
        return { kind: 'ready', result: masked };
      }
    }
    const aws = config.signing.length > 0 ? resignAwsRequest(head, config.signing, options) : null;
    return aws ?? { kind: 'ready', result: identityWhenInjected(applyMaskedSecrets(head, config.masked)) };
  };
  return Object.assign(process, { usesHeader: credentialHeaders(config) });
}

/**
 * The header names the masked pass reads or writes: each secret's, exact or fnmatch. (AWS signing works on
 * Authorization and X-Amz-*, which the admission treats as end-to-end whatever the configuration.)
 */
function credentialHeaders(config: CredentialConfig): (lowerName: string) => boolean {
  const patterns = config.masked.flatMap((m) => m.headers.map((h) => h.toLowerCase()));
  const exact = new Set(patterns.filter((p) => !isGlob(p)));
  const globs = patterns.filter(isGlob).map(globMatcher);
  return (name) => exact.has(name) || globs.some((re) => re.test(name));
}

/**
 * A request that carries a real value asks for an uncompressed answer, which the response scrubber reads as it
 * streams. (The AWS pass decides for itself: a signed Accept-Encoding must stay as signed.)
 */
function identityWhenInjected(result: CredentialResult): CredentialResult {
  return result.injected ? { ...result, headers: acceptingIdentity(result.headers) } : result;
}

/** The surrogate key id a request is signed with (Authorization header or presigned query), if it is one of ours. */
function surrogateKeyIn(head: RequestHead, config: CredentialConfig): string | null {
  const authorization = head.headers.filter(([n]) => n.toLowerCase() === 'authorization').map(([, v]) => v);
  const haystacks = [
    ...authorization.filter((v) => /^\s*AWS4-/i.test(v)),
    ...(/x-amz-credential=/i.test(head.target) ? [safeDecode(head.target)] : []),
  ];
  for (const cred of config.signing) {
    if (haystacks.some((h) => h.includes(cred.surrogateAccessKeyId))) return cred.surrogateAccessKeyId;
  }
  return null;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
