import { parseAuthorizationHeader } from './authorization.js';
import { parseRawQuery, splitTarget } from './canonical.js';
import { headerValues, type SigningStrategy } from './signing-strategy.js';

/**
 * A request signed in its `Authorization` header (docs/aws-signing.md#what-is-re-signed): the payload hash is the
 * `x-amz-content-sha256` header or the body's own, the query is signed whole and travels as sent, and the new
 * signature replaces the first `Authorization` header (further ones are dropped with a `COLLAPSED` event).
 */
export const headerSigned: SigningStrategy = {
  find(head) {
    const authorization = headerValues(head.headers, 'authorization')[0];
    const signature = authorization === undefined ? null : parseAuthorizationHeader(authorization);
    if (!signature) return null;
    return { signature, amzDate: headerValues(head.headers, 'x-amz-date')[0]?.trim() ?? '' };
  },

  payloadHashes(head) {
    const declared = headerValues(head.headers, 'x-amz-content-sha256')[0];
    if (declared !== undefined) return { kind: 'known', hashes: [declared.trim()] };
    return { kind: 'body', withBodyHash: (bodyHash) => [bodyHash] };
  },

  datedNow: true,
  tokenSignedVariants: () => [true],
  unsignedParam: () => false,
  outgoingParams: (head) => parseRawQuery(splitTarget(head.target).query),

  place(head, { credential, signature }, outgoing, newSignature, events) {
    const value = `${signature.algorithm} Credential=${credential.accessKeyId}/${signature.scope}, SignedHeaders=${signature.signedHeaders.join(';')}, Signature=${newSignature}`;
    let seen = 0;
    const headers = outgoing.headers.flatMap(([name, v]): Array<[string, string]> => {
      if (name.toLowerCase() !== 'authorization') return [[name, v]];
      seen++;
      return seen === 1 ? [[name, value]] : [];
    });
    if (seen > 1) {
      const { path } = splitTarget(head.target);
      events.push(
        `COLLAPSED ${seen} duplicate 'authorization' headers in ${head.method} ${head.host}${path} (duplicate credential headers removed)`,
      );
    }
    return { headers, target: head.target };
  },

  streamsChunks: true,
};
