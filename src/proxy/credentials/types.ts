import type { Transform } from 'node:stream';
import type { InjectedValue } from './response-scrubber.js';

/**
 * The contract between the proxy's HTTP layer and the credential passes (masked secrets, AWS re-signing). The HTTP
 * layer calls a CredentialProcessor once per allowed request, after the allowlist decision and before anything is
 * sent upstream; blocked requests never reach it.
 */

/** A request head as it will be forwarded. Header pairs keep wire order, original case and duplicates. */
export interface RequestHead {
  method: string;
  /** Normalised host (lower-case, no port, no trailing dot) used for scope matching. */
  host: string;
  /** The Host header value forwarded upstream (the judged host and port, written canonically); AWS signs it. */
  hostHeader: string;
  /** The port the sandbox connected to, which the request was judged on: scopes match host and port. */
  port: number;
  /** Origin-form target: raw path plus optional `?query`. */
  target: string;
  headers: Array<[string, string]>;
  /**
   * `http` when the request arrived on the plain HTTP listener and will travel upstream in clear text; absent means
   * `https`. Real secret values are never put into a clear-text request.
   */
  scheme?: 'http' | 'https';
}

export interface CredentialResult {
  headers: Array<[string, string]>;
  /** Possibly rewritten target (presigned URLs are re-signed in the query). */
  target: string;
  /** Re-signs an aws-chunked body as it streams; the HTTP layer pipes the request body through it. */
  bodyTransform?: () => Transform;
  /** Log annotations without brackets, in order, e.g. `masked: 1`, `dropped: 1`, `region: us-east-1`. */
  annotations: string[];
  /**
   * Every real value this request carries upstream, in each form it was written there, beside what the sandbox wrote
   * in its place. Set only when a real value was injected: the response relay then maps them back, so a host that
   * echoes the request hands the sandbox nothing it did not already hold (response-scrubber.ts).
   */
  injected?: InjectedValue[];
  /** Loud log lines (`STRIPPED header 'x' from GET url (foreign credential blocked)`, `COLLAPSED …`, warnings). */
  events: string[];
}

export type CredentialOutcome =
  | { kind: 'ready'; result: CredentialResult }
  /** The signature covers a body hash the client did not send as a header: buffer up to maxBytes, then complete. */
  | { kind: 'needs-body'; maxBytes: number; complete(body: Buffer): CredentialResult };

export type CredentialProcessor = ((head: RequestHead) => CredentialOutcome) & {
  /**
   * Whether a credential pass reads or writes this header (lower-case name). `Connection` may never name such a
   * header: the proxy refuses the request rather than drop a credential slot as hop-by-hop.
   */
  readonly usesHeader?: (lowerName: string) => boolean;
};

/** The identity pass, for runs without credentials. */
export const passThrough: CredentialProcessor = (head) => ({
  kind: 'ready',
  result: { headers: head.headers, target: head.target, annotations: [], events: [] },
});
