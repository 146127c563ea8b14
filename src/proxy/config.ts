import { z } from 'zod';
import { AllowlistSchema } from '../protocol/allowlist.js';
import { isIPv4, isIPv6, normalizeHost } from '../protocol/policy.js';
import type { ProxyConfig } from '../protocol/proxy-config.js';
import { parseHostsEntry } from './upstream/route.js';

/**
 * ProxyConfig validated again on arrival in the proxy container. The host built it, but the proxy is where a
 * wrong value would become a wrong decision on the wire, so it fails closed here: a bad config stops startup with
 * a message naming the key path, never the value (the config carries the CA key and real credentials).
 */

const port = z.number().int().min(0).max(65535);
/** Listeners beyond 53/80/443 the allowlist may ask for: generous, but bounded (each is a socket and two servers). */
const MAX_DECLARED_PORTS = 256;
const pem = (what: string) => z.string().includes('-----BEGIN ', { message: `${what} must be PEM` });

// Credential entries pass unknown keys through: the credential passes own their shape, and an additive field the
// host sends must reach them rather than be dropped here.
const MaskedCredentialSchema = z.looseObject({
  name: z.string().min(1),
  surrogate: z.string().min(1),
  value: z.string(),
  scopes: z.array(z.string().min(1)).min(1),
  headers: z.array(z.string().min(1)).min(1),
  allowForeignCredentials: z.boolean(),
});

const SigningCredentialSchema = z.looseObject({
  name: z.string().min(1),
  type: z.literal('aws-sigv4'),
  surrogateAccessKeyId: z.string().min(1),
  surrogateSecretAccessKey: z.string().optional(),
  accessKeyId: z.string().min(1),
  secretAccessKey: z.string().min(1),
  surrogateSessionToken: z.string().optional(),
  sessionToken: z.string().optional(),
  scopes: z.array(z.string().min(1)).min(1),
});

export const ProxyConfigSchema = z.strictObject({
  version: z.literal(1),
  allowlist: AllowlistSchema,
  ca: z.strictObject({ certPem: pem('ca.certPem'), keyPem: pem('ca.keyPem') }),
  sandboxAddress: z.string().refine(isIPv4, 'sandboxAddress must be an IPv4 address (DNS answers A records)'),
  listen: z.strictObject({
    host: z.string().refine((h) => isIPv4(h) || isIPv6(h), 'listen.host must be an IP address'),
    http: port,
    https: port,
    dns: port,
    ports: z
      .array(z.number().int().min(1).max(65535))
      .max(MAX_DECLARED_PORTS, `at most ${MAX_DECLARED_PORTS} ports`)
      .optional(),
  }),
  upstream: z.strictObject({
    dns: z.array(z.string().refine((s) => isIPv4(s) || isIPv6(s), 'a resolver is an IP address')),
    hosts: z.record(
      z.string().refine((h) => normalizeHost(h) !== null, 'a key is a host name, optionally with a port'),
      z.string().refine((v) => parseHostsEntry(v) !== null, 'expected IP, IP:PORT or [IPv6]:PORT'),
    ),
    caPem: pem('upstream.caPem').optional(),
    hostAddresses: z.array(z.string().refine((a) => isIPv4(a) || isIPv6(a), 'an IP address')).optional(),
    connectTimeoutMs: z.number().int().positive(),
  }),
  credentials: z.strictObject({
    masked: z.array(MaskedCredentialSchema),
    signing: z.array(SigningCredentialSchema),
  }),
  audit: z.boolean().optional(),
  run: z.strictObject({
    id: z.string().min(1),
    policySha256: z.string(),
    baseCommit: z.string().optional(),
  }),
  log: z
    .strictObject({
      textPath: z.string().min(1).optional(),
      jsonPath: z.string().min(1).optional(),
      stdout: z.boolean().optional(),
    })
    .optional(),
});

export class ProxyConfigError extends Error {
  readonly code = 'proxy_config';
}

/** Parse one line of JSON into a ProxyConfig, or throw a ProxyConfigError that names key paths only. */
export function parseProxyConfig(line: string): ProxyConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    throw new ProxyConfigError('proxy config: stdin did not carry one line of JSON');
  }
  const parsed = ProxyConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const where = issue.path.length ? issue.path.join('.') : '(root)';
      return `${where}: ${issue.message}`;
    });
    throw new ProxyConfigError(`proxy config: ${problems.join('; ')}`);
  }
  return parsed.data;
}
