import { parsePresignedQuery } from './authorization.js';
import {
  EMPTY_SHA256,
  awsUriEncode,
  parseRawQuery,
  percentDecode,
  splitTarget,
  type RawQueryParam,
} from './canonical.js';
import { UNSIGNED_PAYLOAD, bodyIsEmpty, type SigningStrategy } from './signing-strategy.js';

/**
 * Longest validity a presigned URL gets once it carries a real signature. The sandbox uses the URL at once; a
 * week-long (AWS's maximum) real-signed URL echoed back by an upstream (a redirect, an error page) would outlive
 * the run as a bearer capability.
 */
export const MAX_PRESIGNED_EXPIRES_SECONDS = 3600;

function serializeQuery(params: readonly RawQueryParam[]): string {
  return params.map((p) => (p.hasEquals ? `${p.name}=${p.value}` : p.name)).join('&');
}

/**
 * A presigned URL (docs/aws-signing.md#what-is-re-signed): the signature, credential and date travel in the query,
 * which is rewritten in place — the real `X-Amz-Credential` and token, `X-Amz-Expires` capped, the new
 * `X-Amz-Signature` — with every other byte and the parameter order as the client sent them.
 */
export const presigned: SigningStrategy = {
  find(_head, params) {
    const signature = parsePresignedQuery(params);
    return signature ? { signature, amzDate: signature.amzDate } : null;
  },

  payloadHashes(head, params, signature) {
    const declared = params.find((p) => p.name === 'X-Amz-Content-Sha256');
    const s3 = signature.service === 's3';
    // S3 presigned URLs sign UNSIGNED-PAYLOAD (uploads may be large); other services' presigners hash the body.
    const known = declared ? [percentDecode(declared.value).toString('utf8')] : s3 ? [UNSIGNED_PAYLOAD] : null;
    if (known) {
      if (s3 && bodyIsEmpty(head)) known.push(EMPTY_SHA256);
      return { kind: 'known', hashes: known };
    }
    return { kind: 'body', withBodyHash: (bodyHash) => [bodyHash, UNSIGNED_PAYLOAD] };
  },

  datedNow: false,

  // AWS lets a session token be appended to a presigned URL after signing.
  tokenSignedVariants: (params) => (params.some((p) => p.name === 'X-Amz-Security-Token') ? [true, false] : [true]),

  unsignedParam: (name, tokenSigned) => name === 'X-Amz-Signature' || (!tokenSigned && name === 'X-Amz-Security-Token'),

  outgoingParams(head, { credential, signature }, events) {
    const swapToken = credential.sessionToken !== undefined && credential.surrogateSessionToken !== undefined;
    return parseRawQuery(splitTarget(head.target).query).map((p) => {
      if (p.name === 'X-Amz-Credential')
        return { ...p, value: awsUriEncode(`${credential.accessKeyId}/${signature.scope}`, false) };
      if (p.name === 'X-Amz-Security-Token' && swapToken)
        return { ...p, value: awsUriEncode(credential.sessionToken!, false) };
      if (p.name === 'X-Amz-Expires') {
        const expires = Number(percentDecode(p.value).toString('utf8'));
        if (!(expires <= MAX_PRESIGNED_EXPIRES_SECONDS)) {
          events.push(
            `re-sign: presigned X-Amz-Expires lowered to ${MAX_PRESIGNED_EXPIRES_SECONDS}s for ${head.method} ${head.host}`,
          );
          return { ...p, value: String(MAX_PRESIGNED_EXPIRES_SECONDS) };
        }
      }
      return p;
    });
  },

  place(head, _detected, outgoing, newSignature) {
    const params = outgoing.params.map((p) => (p.name === 'X-Amz-Signature' ? { ...p, value: newSignature } : p));
    return { headers: outgoing.headers, target: `${splitTarget(head.target).path}?${serializeQuery(params)}` };
  },

  streamsChunks: false,
};
