import type { CredentialConfig } from '../../protocol/proxy-config.js';
import { resignAwsRequest, type SigningTrace } from './aws/resign.js';
import { applyMaskedSecrets } from './masked.js';
import type { CredentialProcessor } from './types.js';

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
 * request. A re-signed request skips the masked pass, as in Airut (item 149): its credentials are already real.
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
  return (head) => {
    const aws = config.signing.length > 0 ? resignAwsRequest(head, config.signing, options) : null;
    return aws ?? { kind: 'ready', result: applyMaskedSecrets(head, config.masked) };
  };
}
