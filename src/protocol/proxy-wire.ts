import { z } from 'zod';
import { AllowlistSchema } from './allowlist.js';
import { isIPv4, isIPv6, normalizeHost } from './policy.js';
import { isResolverAddress, parseHostsEntry } from './sandbox-config.js';

/**
 * The wire between the host (CLI) and the proxy container: the configuration the host writes as one JSON line on
 * the proxy's stdin, the ready line the proxy answers with once every listener is bound, and the event lines it
 * writes on stdout for the host's network log. Both sides import this module and nothing re-declares any of it.
 *
 * The configuration carries the per-run CA key and real credential values, which is why it travels over stdin
 * (never argv, never a file left behind) and why every error here names key paths, never values.
 */

const ipAddress = (what: string) => z.string().refine((s) => isIPv4(s) || isIPv6(s), `${what} is an IP address`);
const port = z.number().int().min(0).max(65535);
/** Listeners beyond 53/80/443 the allowlist may ask for: generous, but bounded (each is a socket and two servers). */
const MAX_DECLARED_PORTS = 256;
const pem = (what: string) => z.string().includes('-----BEGIN ', { message: `${what} must be PEM` });

// Credential entries pass unknown keys through: the credential passes own their shape, and an additive field the
// host sends must reach them rather than be dropped here.
export const MaskedCredentialSchema = z
  .looseObject({
    name: z.string().min(1).describe('The container variable that holds the surrogate.'),
    surrogate: z.string().min(1).describe('What the sandbox sees and sends.'),
    value: z.string().describe('The real value the proxy puts on the wire on scoped hosts.'),
    scopes: z.array(z.string().min(1)).min(1).describe('Host patterns where the real value may be sent.'),
    headers: z.array(z.string().min(1)).min(1).describe('Header name patterns in which the surrogate is replaced.'),
    allowForeignCredentials: z.boolean().describe('Keep exact-name headers that carry some other credential.'),
  })
  .describe('A masked secret: surrogate in the sandbox, real value on the wire to scoped hosts.');

export const SigningCredentialSchema = z
  .looseObject({
    name: z.string().min(1),
    type: z.literal('aws-sigv4'),
    surrogateAccessKeyId: z.string().min(1).describe('The access key id the sandbox signs with.'),
    surrogateSecretAccessKey: z
      .string()
      .optional()
      .describe(
        "The surrogate secret the sandbox signs with. With it the proxy verifies the client's signature to learn " +
          'which canonicalisation variant the client used (normalised path or not, token signed or appended); ' +
          "without it the proxy assumes AWS's default for the service.",
      ),
    accessKeyId: z.string().min(1),
    secretAccessKey: z.string().min(1),
    surrogateSessionToken: z.string().optional(),
    sessionToken: z.string().optional(),
    scopes: z.array(z.string().min(1)).min(1).describe('Host patterns where requests are re-signed.'),
  })
  .describe('AWS credentials the proxy re-signs with; the sandbox only has surrogates.');

export const ListenSchema = z.strictObject({
  host: ipAddress('listen.host'),
  http: port,
  https: port,
  dns: port,
  ports: z
    .array(z.number().int().min(1).max(65535))
    .max(MAX_DECLARED_PORTS, `at most ${MAX_DECLARED_PORTS} ports`)
    .optional()
    .describe(
      'Ports beyond 80/443 that allowlist entries name (`registry.internal:5000`): the proxy listens on each, ' +
        'telling TLS from plain HTTP per connection, and judges requests on them as made to that port.',
    ),
});

export const UpstreamSchema = z.strictObject({
  dns: z
    .array(z.string().refine(isResolverAddress, 'a resolver is an IP address, optionally with a port'))
    .describe("Resolver addresses; empty = the proxy's own system resolver."),
  hosts: z
    .record(
      z.string().refine((h) => normalizeHost(h) !== null, 'a key is a host name, optionally with a port'),
      z.string().refine((v) => parseHostsEntry(v) !== null, 'expected IP, IP:PORT or [IPv6]:PORT'),
    )
    .describe(
      'name (lower-case, optionally `name:port`) → "IP" or "IP:PORT"; such names bypass DNS and the private-address ' +
        "guard. The upstream port is the value's, else the port the sandbox connected to.",
    ),
  caPem: pem('upstream.caPem')
    .optional()
    .describe('Extra PEM CAs trusted for upstream TLS, on top of the system roots.'),
  hostAddresses: z
    .array(ipAddress('a host address'))
    .optional()
    .describe('Addresses of the machine running airlock; refused as upstream addresses unless mapped in `hosts`.'),
  connectTimeoutMs: z.number().int().positive(),
});

export const CredentialConfigSchema = z.strictObject({
  masked: z.array(MaskedCredentialSchema),
  signing: z.array(SigningCredentialSchema),
});

export const ProxyConfigSchema = z
  .strictObject({
    version: z.literal(1),
    allowlist: AllowlistSchema,
    ca: z
      .strictObject({ certPem: pem('ca.certPem'), keyPem: pem('ca.keyPem') })
      .describe('Per-run CA (ECDSA P-256) that signs leaf certificates. The key never leaves the proxy.'),
    sandboxAddress: z
      .string()
      .refine(isIPv4, 'sandboxAddress must be an IPv4 address (DNS answers A records)')
      .describe(
        "The address the DNS responder answers every A query with: the proxy's address on the sandbox network.",
      ),
    listen: ListenSchema,
    upstream: UpstreamSchema,
    credentials: CredentialConfigSchema,
    audit: z
      .boolean()
      .optional()
      .describe(
        'Audit mode (`airlock run --audit`): requests the allowlist refuses for policy reasons (`refusalClass` in ' +
          'deny-codes.ts) are forwarded and logged as `would_block`; safety refusals stay. Absent: enforce.',
      ),
    run: z
      .strictObject({ id: z.string().min(1), policySha256: z.string(), baseCommit: z.string().optional() })
      .describe("Run metadata written into the log's start line."),
    log: z
      .strictObject({
        textPath: z.string().min(1).optional(),
        jsonPath: z.string().min(1).optional(),
        stdout: z.boolean().optional(),
      })
      .optional()
      .describe('Where the proxy writes its network log: files inside its container, and/or event lines on stdout.'),
  })
  .describe('Everything the host hands the proxy for one run.');

export type ProxyConfig = z.output<typeof ProxyConfigSchema>;
export type ListenConfig = z.output<typeof ListenSchema>;
export type UpstreamConfig = z.output<typeof UpstreamSchema>;
export type CredentialConfig = z.output<typeof CredentialConfigSchema>;
export type MaskedCredential = z.output<typeof MaskedCredentialSchema>;
export type SigningCredential = z.output<typeof SigningCredentialSchema>;

/** A line on the wire that is not what it claims to be. Messages name key paths, never values. */
export class ProxyWireError extends Error {
  readonly code = 'proxy_wire';
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length ? issue.path.join('.') : '(root)'}: ${issue.message}`)
    .join('; ');
}

/** The config line the host writes on the proxy's stdin (newline included). */
export function encodeProxyConfig(config: ProxyConfig): string {
  return JSON.stringify(config) + '\n';
}

/** One line of JSON into a validated ProxyConfig, or a ProxyWireError that names key paths only. */
export function decodeProxyConfig(line: string): ProxyConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    throw new ProxyWireError('proxy config: stdin did not carry one line of JSON');
  }
  const parsed = ProxyConfigSchema.safeParse(raw);
  if (!parsed.success) throw new ProxyWireError(`proxy config: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

/** `AIRLOCK-PROXY-READY {ports}`: printed once, when every listener is bound. */
export const READY_LINE_PREFIX = 'AIRLOCK-PROXY-READY ';
/** `AIRLOCK-EVENT <json>\t<text>`: one network-log event, in both renderings. */
export const EVENT_LINE_PREFIX = 'AIRLOCK-EVENT ';

export const ProxyAddressesSchema = z.strictObject({
  http: port,
  https: port,
  dns: port,
  /** Each declared listener port → the port it was bound to (the same in the container; free ports in tests). */
  ports: z.record(z.string().regex(/^[1-9]\d{0,4}$/), port).optional(),
});
export type ProxyAddresses = z.output<typeof ProxyAddressesSchema>;

export function encodeReadyLine(addresses: ProxyAddresses): string {
  return `${READY_LINE_PREFIX}${JSON.stringify(addresses)}\n`;
}

/**
 * What the host needs from an event's JSON record: the decision it counts. Everything else is kept as the proxy
 * wrote it (docs/network-log.md), so the record is passed through, not re-serialised.
 */
const EventRecordSchema = z.looseObject({
  event: z.string().min(1),
  decision: z.enum(['allowed', 'blocked', 'would_block', 'error']).optional(),
});
export type EventRecord = z.output<typeof EventRecordSchema>;

export interface EventLine {
  record: EventRecord;
  /** The JSONL record exactly as the proxy wrote it. */
  json: string;
  /** The text-log line; empty for an event without one. */
  text: string;
}

/**
 * The tab is a safe separator: JSON.stringify escapes tabs and line breaks inside strings, and the proxy's text
 * formatter escapes every control character. A line break that slipped into the text anyway would forge a second
 * line on the wire, so it is escaped here too rather than trusted.
 */
export function encodeEventLine(json: string, text: string): string {
  const oneLine = text.replace(/[\r\n]/g, (c) => (c === '\r' ? '\\x0d' : '\\x0a'));
  return `${EVENT_LINE_PREFIX}${json}\t${oneLine}\n`;
}

export type ProxyLine =
  | { kind: 'ready'; addresses: ProxyAddresses }
  | ({ kind: 'event' } & EventLine)
  /** A line that claims to be ours but is malformed: counted by nobody, written nowhere. */
  | { kind: 'malformed'; reason: string }
  | { kind: 'other' };

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** One line of the proxy's stdout (without its newline). */
export function decodeProxyLine(line: string): ProxyLine {
  if (line.startsWith(READY_LINE_PREFIX)) {
    const parsed = ProxyAddressesSchema.safeParse(parseJson(line.slice(READY_LINE_PREFIX.length)));
    return parsed.success
      ? { kind: 'ready', addresses: parsed.data }
      : { kind: 'malformed', reason: 'ready line without its ports' };
  }
  if (line.startsWith(EVENT_LINE_PREFIX)) {
    const rest = line.slice(EVENT_LINE_PREFIX.length);
    const tab = rest.indexOf('\t');
    const json = tab < 0 ? rest : rest.slice(0, tab);
    const text = tab < 0 ? '' : rest.slice(tab + 1);
    const parsed = EventRecordSchema.safeParse(parseJson(json));
    return parsed.success
      ? { kind: 'event', record: parsed.data, json, text }
      : { kind: 'malformed', reason: 'event line without a JSON event record' };
  }
  return { kind: 'other' };
}
