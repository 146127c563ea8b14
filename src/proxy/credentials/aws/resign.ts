import { endpointMatches } from '../../../protocol/policy.js';
import type { SigningCredential } from '../../../protocol/proxy-wire.js';
import { acceptingIdentity, injectedForms, type InjectedValue } from '../response-scrubber.js';
import type { CredentialOutcome, CredentialResult, RequestHead } from '../types.js';
import {
  EMPTY_SHA256,
  canonicalHeaders,
  canonicalQuery,
  canonicalRequest,
  canonicalUri,
  parseRawQuery,
  percentDecode,
  sha256Hex,
  splitTarget,
  type PathStyle,
  type RawQueryParam,
} from './canonical.js';
import { AwsChunkResigner, type ChunkSigningContext } from './chunked.js';
import { headerSigned } from './header-signed.js';
import { presigned } from './presigned.js';
import { bodyIsEmpty, headerValues, type DetectedSignature, type PayloadHashes } from './signing-strategy.js';
import { SIGV4_ALGORITHM, sigv4Sign, sigv4SigningKey, sigv4Verify, stringToSign } from './sigv4.js';
import { deriveSigV4AKey, sigv4aSign, sigv4aVerify, type SigV4AKeyPair } from './sigv4a.js';

/**
 * AWS re-signing (docs/aws-signing.md): a request the sandbox signed with a surrogate key id, on a host in that
 * credential's scopes, is signed again with the real key over exactly what the client signed. Where the signature
 * travels (header-signed.ts, presigned.ts) is a strategy; canonicalising, learning the client's variant and signing
 * are shared. The sandbox's signature is worthless upstream, so nothing here is a security check on it; it is used
 * only to learn which of AWS's canonicalisation variants the client used (when the proxy knows the surrogate
 * secret; docs/aws-signing.md#learning-the-clients-variant).
 */

export interface AwsResignOptions {
  now: () => Date;
  /** Most bytes buffered to hash a body the signature covers but the client did not hash into a header. */
  maxDeferredBody: number;
  /** Most bytes of one aws-chunked chunk held while its signature is computed. */
  maxChunkBytes: number;
  keyCache: SigV4AKeyCache;
  /** Receives what was signed, for DEBUG-level logging and for conformance tests. Never given a key. */
  trace?: (trace: SigningTrace) => void;
}

export interface SigningTrace {
  canonicalRequest: string;
  stringToSign: string;
  signature: string;
  /** Whether the client's surrogate signature verified under the variant used; null if the proxy cannot tell. */
  clientSignatureVerified: boolean | null;
}

const STREAMING_SIGNED = /^STREAMING-(AWS4-HMAC-SHA256|AWS4-ECDSA-P256-SHA256)-PAYLOAD(-TRAILER)?$/;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
const SKEW_WARNING_MINUTES = 5;

/** SigV4A key pairs by key id and secret, one cache per credential processor. */
export type SigV4AKeyCache = Map<string, SigV4AKeyPair>;

/** Derivation costs a few HMACs and an EC point multiplication; a run uses a handful of key pairs. */
function sigv4aKeyPair(keyPairs: SigV4AKeyCache, accessKeyId: string, secretAccessKey: string): SigV4AKeyPair {
  const id = `${accessKeyId}\0${secretAccessKey}`;
  let pair = keyPairs.get(id);
  if (!pair) {
    if (keyPairs.size > 64) keyPairs.clear();
    pair = deriveSigV4AKey(accessKeyId, secretAccessKey);
    keyPairs.set(id, pair);
  }
  return pair;
}

function inScope(head: RequestHead, credential: SigningCredential): boolean {
  return credential.scopes.some((scope) => endpointMatches(head.host, head.port, head.scheme ?? 'https', scope));
}

function parseAmzDate(value: string): Date | null {
  const m = AMZ_DATE.exec(value);
  if (!m) return null;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  return new Date(Date.UTC(y, mo - 1, d, h, mi, s));
}

export function formatAmzDate(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
}

/**
 * Which request this is, or null to leave it to the masked-secret pass (docs/aws-signing.md#what-is-re-signed). A
 * request with an `Authorization` header is header-signed or nothing: a presigned query beside it is not looked at.
 */
function detect(head: RequestHead, credentials: readonly SigningCredential[]): DetectedSignature | null {
  const strategy = headerValues(head.headers, 'authorization').length > 0 ? headerSigned : presigned;
  const found = strategy.find(head, parseRawQuery(splitTarget(head.target).query));
  if (!found) return null;
  const credential = credentials.find((c) => c.surrogateAccessKeyId === found.signature.accessKeyId);
  // A surrogate on a host outside the credential's scopes is forwarded as it is: useless there, and never real.
  if (!credential || !inScope(head, credential)) return null;
  return { strategy, ...found, credential };
}

/**
 * Warn, never block and never rewrite the date — the client's clock is the client's problem
 * (docs/aws-signing.md#log-output).
 */
function clockSkewEvent(amzDate: string, now: Date): string | null {
  const signed = parseAmzDate(amzDate);
  if (!signed) return null;
  const drift = Math.trunc(Math.abs(now.getTime() - signed.getTime()) / 60_000);
  if (drift <= SKEW_WARNING_MINUTES) return null;
  return (
    `WARNING: Container clock skew detected: x-amz-date=${amzDate}, proxy-time=${formatAmzDate(now)} ` +
    `(drift=${drift}m). Upstream rejection likely.`
  );
}

interface Variant {
  pathStyle: PathStyle;
  plusAsSpace: boolean;
  sortDuplicates: boolean;
  /** Presigned only: whether X-Amz-Security-Token was signed (AWS lets it be appended after signing). */
  tokenSigned: boolean;
  payloadHash: string;
}

interface RequestForm {
  method: string;
  path: string;
  params: RawQueryParam[];
  headers: ReadonlyArray<readonly [string, string]>;
}

/** The one canonicaliser both strategies share: the request form, in the variant the client used. */
function buildCanonical(form: RequestForm, detected: DetectedSignature, variant: Variant): string {
  const { signature, strategy } = detected;
  const exclude = (name: string): boolean => strategy.unsignedParam(name, variant.tokenSigned);
  return canonicalRequest({
    method: form.method,
    uri: canonicalUri(form.path, variant.pathStyle),
    query: canonicalQuery(form.params, { plusAsSpace: variant.plusAsSpace, exclude }),
    headers: canonicalHeaders(form.headers, signature.signedHeaders, { sortDuplicates: variant.sortDuplicates }),
    signedHeaders: signature.signedHeaders,
    payloadHash: variant.payloadHash,
  });
}

/** Every variant worth trying, the most likely first: the first is what the proxy uses when it cannot verify. */
function variants(form: RequestForm, detected: DetectedSignature, payloadHashes: string[]): Variant[] {
  const s3 = detected.signature.service === 's3';
  const pathStyles: PathStyle[] = s3
    ? ['as-is', 'reencoded', 'double-normalized', 'double']
    : ['double-normalized', 'double', 'as-is', 'reencoded'];
  const plus = form.params.some((p) => p.name.includes('+') || p.value.includes('+')) ? [false, true] : [false];
  const repeated = detected.signature.signedHeaders.some((name) => headerValues(form.headers, name).length > 1);
  const sorts = repeated ? [false, true] : [false];
  const tokens = detected.strategy.tokenSignedVariants(form.params);
  const out: Variant[] = [];
  for (const payloadHash of payloadHashes)
    for (const tokenSigned of tokens)
      for (const sortDuplicates of sorts)
        for (const plusAsSpace of plus)
          for (const pathStyle of pathStyles)
            out.push({ pathStyle, plusAsSpace, sortDuplicates, tokenSigned, payloadHash });
  return out;
}

interface Signer {
  verify(stringToSign: string, signature: string): boolean;
}

function surrogateVerifier(detected: DetectedSignature, keyCache: SigV4AKeyCache): Signer | null {
  const { credential, signature } = detected;
  const secret = credential.surrogateSecretAccessKey;
  if (secret === undefined) return null;
  if (signature.algorithm === SIGV4_ALGORITHM) {
    const key = sigv4SigningKey(secret, signature.scopeParts);
    return { verify: (sts, sig) => sigv4Verify(key, sts, sig) };
  }
  const pair = sigv4aKeyPair(keyCache, credential.surrogateAccessKeyId, secret);
  return { verify: (sts, sig) => sigv4aVerify(pair.publicKey, sts, sig) };
}

/** Signs with the real key; SigV4A retries (its signatures are randomised) until one fits the client's width. */
function realSigner(
  detected: DetectedSignature,
  keyCache: SigV4AKeyCache,
): (stringToSign: string, width?: number) => string {
  const { credential, signature } = detected;
  if (signature.algorithm === SIGV4_ALGORITHM) {
    const key = sigv4SigningKey(credential.secretAccessKey, signature.scopeParts);
    return (sts) => sigv4Sign(key, sts);
  }
  const pair = sigv4aKeyPair(keyCache, credential.accessKeyId, credential.secretAccessKey);
  return (sts, width) => {
    let sig = sigv4aSign(pair, sts);
    for (let attempt = 0; width !== undefined && sig.length > width && attempt < 64; attempt++)
      sig = sigv4aSign(pair, sts);
    return sig;
  };
}

/** The headers as they will leave: the real session token in place of the surrogate, wherever it is sent. */
function outgoingHeaders(head: RequestHead, { credential }: DetectedSignature): Array<[string, string]> {
  if (credential.sessionToken === undefined || credential.surrogateSessionToken === undefined) return head.headers;
  const token = credential.sessionToken;
  // Before canonicalising (docs/aws-signing.md#deliberate-differences-from-airut, the session-token row): a signed
  // token must be signed as the value AWS will receive.
  return head.headers.map(([name, value]): [string, string] =>
    name.toLowerCase() === 'x-amz-security-token' ? [name, token] : [name, value],
  );
}

/**
 * What a response could reflect of a re-signed request: the real key id and session token (raw and encoded), and
 * the real signature, each mapped back to the sandbox's own. With all three back to surrogates, an echoed presigned
 * URL or Authorization header is worthless outside the proxy. The secret key itself never goes on the wire.
 */
function injectedValues(detected: DetectedSignature, newSignature: string): InjectedValue[] {
  const { credential, signature } = detected;
  const values = injectedForms(credential.accessKeyId, credential.surrogateAccessKeyId);
  if (credential.sessionToken !== undefined && credential.surrogateSessionToken !== undefined) {
    values.push(...injectedForms(credential.sessionToken, credential.surrogateSessionToken));
  }
  values.push({ sent: newSignature, sandbox: signature.signature });
  return values;
}

/** SigV4 scopes name the region; SigV4A requests carry their region set in a header or the query instead. */
function regionAnnotation(
  detected: DetectedSignature,
  headers: ReadonlyArray<readonly [string, string]>,
  params: readonly RawQueryParam[],
): string | null {
  if (detected.signature.region !== undefined) return `region: ${detected.signature.region}`;
  const fromHeader = headerValues(headers, 'x-amz-region-set')[0];
  const fromQuery = params.find((p) => p.name === 'X-Amz-Region-Set');
  const regionSet = fromHeader ?? (fromQuery ? percentDecode(fromQuery.value).toString('utf8') : undefined);
  return regionSet === undefined ? null : `region: ${regionSet.trim()}`;
}

function resign(
  head: RequestHead,
  detected: DetectedSignature,
  payloadHashes: string[],
  options: AwsResignOptions,
): CredentialResult {
  const { signature, strategy, amzDate } = detected;
  const events: string[] = [];
  // A presigned URL may legitimately have been made a while ago; only a header-signed request says "now".
  const skew = strategy.datedNow ? clockSkewEvent(amzDate, options.now()) : null;
  if (skew) events.push(skew);

  const { path, query } = splitTarget(head.target);
  const original: RequestForm = { method: head.method, path, params: parseRawQuery(query), headers: head.headers };
  const leaving = { headers: outgoingHeaders(head, detected), params: strategy.outgoingParams(head, detected, events) };
  const outgoing: RequestForm = { ...original, ...leaving };

  const candidates = variants(original, detected, payloadHashes);
  const verifier = surrogateVerifier(detected, options.keyCache);
  let chosen = candidates[0]!;
  let verified: boolean | null = null;
  if (verifier) {
    verified = false;
    const tried = new Set<string>();
    for (const variant of candidates) {
      const creq = buildCanonical(original, detected, variant);
      if (tried.has(creq)) continue;
      tried.add(creq);
      if (verifier.verify(stringToSign(signature.algorithm, amzDate, signature.scope, creq), signature.signature)) {
        chosen = variant;
        verified = true;
        break;
      }
    }
    if (!verified) {
      events.push(
        `re-sign: the client's signature matches no canonical form the proxy knows for ${head.method} ${head.host}; ` +
          `signed with the default for service '${signature.service}' (upstream may reject it)`,
      );
    }
  }

  const creq = buildCanonical(outgoing, detected, chosen);
  const sts = stringToSign(signature.algorithm, amzDate, signature.scope, creq);
  const sign = realSigner(detected, options.keyCache);
  const newSignature = sign(sts);
  options.trace?.({
    canonicalRequest: creq,
    stringToSign: sts,
    signature: newSignature,
    clientSignatureVerified: verified,
  });

  const placed = strategy.place(head, detected, leaving, newSignature, events);
  const annotations = ['resigned'];
  const region = regionAnnotation(detected, placed.headers, leaving.params);
  if (region) annotations.push(region);

  // A signed Accept-Encoding must stay as signed; the response relay then decodes what it has to.
  const headers = signature.signedHeaders.includes('accept-encoding')
    ? placed.headers
    : acceptingIdentity(placed.headers);
  const result: CredentialResult = {
    headers,
    target: placed.target,
    annotations,
    events,
    injected: injectedValues(detected, newSignature),
  };
  const streaming = strategy.streamsChunks ? STREAMING_SIGNED.exec(chosen.payloadHash) : null;
  if (streaming) {
    const context: ChunkSigningContext = {
      algorithm: signature.algorithm,
      amzDate,
      scope: signature.scope,
      seedSignature: newSignature,
      trailer: streaming[2] !== undefined,
      sign: (chunkSts, width) => sign(chunkSts, width),
    };
    result.bodyTransform = () => new AwsChunkResigner(context, { maxChunkBytes: options.maxChunkBytes });
  }
  return result;
}

/**
 * Fail open (docs/aws-signing.md#failing-open): a request we cannot re-sign still carries only surrogates, useless
 * upstream.
 */
function unchanged(head: RequestHead, reason: string): CredentialResult {
  return {
    headers: head.headers,
    target: head.target,
    annotations: [],
    events: [`re-sign failed for ${head.method} ${head.host}: ${reason}; forwarded unchanged`],
  };
}

function safely(head: RequestHead, run: () => CredentialResult): CredentialResult {
  try {
    return run();
  } catch (err) {
    return unchanged(head, err instanceof Error ? err.message : String(err));
  }
}

/**
 * Re-signs a request signed with a known surrogate key id on a host in scope; null for every other request.
 * A request whose signature covers a body hash the client did not put in a header asks for the body first.
 */
export function resignAwsRequest(
  head: RequestHead,
  credentials: readonly SigningCredential[],
  options: AwsResignOptions,
): CredentialOutcome | null {
  const detected = detect(head, credentials);
  if (!detected) return null;
  if (!parseAmzDate(detected.amzDate)) {
    return { kind: 'ready', result: unchanged(head, 'no valid X-Amz-Date') };
  }
  const payload: PayloadHashes = detected.strategy.payloadHashes(
    head,
    parseRawQuery(splitTarget(head.target).query),
    detected.signature,
  );
  if (payload.kind === 'known') {
    return { kind: 'ready', result: safely(head, () => resign(head, detected, payload.hashes, options)) };
  }
  if (bodyIsEmpty(head)) {
    const hashes = payload.withBodyHash(EMPTY_SHA256);
    return { kind: 'ready', result: safely(head, () => resign(head, detected, hashes, options)) };
  }
  return {
    kind: 'needs-body',
    maxBytes: options.maxDeferredBody,
    complete: (body) => safely(head, () => resign(head, detected, payload.withBodyHash(sha256Hex(body)), options)),
  };
}
