import type { Allowlist } from './allowlist.js';

/**
 * Everything the host hands the proxy for one run. It travels over the proxy container's stdin (never argv, never
 * a file left behind) because it carries the CA key and real credential values. Both sides import this type; the
 * proxy validates it again on arrival.
 */
export interface ProxyConfig {
  version: 1;
  allowlist: Allowlist;
  /** Per-run CA (ECDSA P-256) that signs leaf certificates. The key never leaves the proxy. */
  ca: { certPem: string; keyPem: string };
  /** The address the DNS responder answers every A query with: the proxy's address on the sandbox network. */
  sandboxAddress: string;
  listen: ListenConfig;
  upstream: UpstreamConfig;
  credentials: CredentialConfig;
  /**
   * Audit mode (`airlock run --audit`): requests the allowlist refuses for policy reasons (`refusalClass` in
   * deny-codes.ts) are forwarded and logged as `would_block`; safety refusals stay. Absent: enforce.
   */
  audit?: boolean;
  /** Run metadata written into the log's start line. */
  run: { id: string; policySha256: string; baseCommit?: string };
  /**
   * Where the proxy writes its network log: files inside the proxy container, and/or `AIRLOCK-EVENT <json>\t<text>`
   * lines on stdout for the host to collect. Absent: no log.
   */
  log?: { textPath?: string; jsonPath?: string; stdout?: boolean };
}

export interface ListenConfig {
  host: string;
  http: number;
  https: number;
  dns: number;
  /**
   * Ports beyond 80/443 that allowlist entries name (`registry.internal:5000`): the proxy listens on each, telling
   * TLS from plain HTTP per connection, and judges requests on them as made to that port.
   */
  ports?: number[];
}

export interface UpstreamConfig {
  /** Resolver addresses; empty = the proxy's own system resolver. */
  dns: string[];
  /**
   * name (lower-case, optionally `name:port`) → "IP" or "IP:PORT"; such names bypass DNS and the private-address
   * guard. The upstream port is the value's, else the port the sandbox connected to.
   */
  hosts: Record<string, string>;
  /** Extra PEM CAs trusted for upstream TLS, on top of the system roots. */
  caPem?: string;
  connectTimeoutMs: number;
  /** Addresses of the machine running airlock; refused as upstream addresses unless mapped in `hosts`. */
  hostAddresses?: string[];
}

export interface MaskedCredential {
  name: string;
  surrogate: string;
  value: string;
  scopes: string[];
  headers: string[];
  allowForeignCredentials: boolean;
}

export interface SigningCredential {
  name: string;
  type: 'aws-sigv4';
  surrogateAccessKeyId: string;
  /**
   * The surrogate secret the sandbox signs with. Optional: with it the proxy verifies the client's signature to learn
   * which canonicalisation variant the client used (normalised path or not, token signed or appended); without it
   * the proxy assumes AWS's default for the service.
   */
  surrogateSecretAccessKey?: string;
  accessKeyId: string;
  secretAccessKey: string;
  surrogateSessionToken?: string;
  sessionToken?: string;
  scopes: string[];
}

export interface CredentialConfig {
  masked: MaskedCredential[];
  signing: SigningCredential[];
}
