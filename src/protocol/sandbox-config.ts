import { z } from 'zod';
import { hostPatternProblem } from './allowlist.js';
import { explicitPort, isIPv4, isIPv6, normalizeHost } from './policy.js';

const envName = z
  .string()
  .regex(
    /^[A-Za-z_][A-Za-z0-9_]*$/,
    'an environment variable name is letters, digits and `_`, not starting with a digit',
  );

const patternList = (what: string) => z.array(z.string().min(1)).min(1, `${what} must list at least one pattern`);

/** Hosts a credential may be sent to: patterns as in the allowlist, a port named where it is not the default. */
const scopeList = patternList('scopes').superRefine((patterns, ctx) => {
  for (const [index, pattern] of patterns.entries()) {
    const problem = hostPatternProblem(pattern);
    if (problem !== null) ctx.addIssue({ code: 'custom', path: [index], message: problem });
  }
});

export const MaskedSecretSchema = z
  .strictObject({
    value: z.string().describe('The real secret, usually `!env NAME`. An empty value injects nothing.'),
    scopes: scopeList.describe(
      'Hosts (fnmatch, case-insensitive) where the real value may be sent; on the default port only (443) unless ' +
        'the pattern names one (`git.internal:8443`).',
    ),
    headers: patternList('headers').describe(
      'Header names (fnmatch, case-insensitive) in which the surrogate is replaced, e.g. `Authorization`.',
    ),
    allow_foreign_credentials: z
      .boolean()
      .default(false)
      .describe('Keep exact-name headers that carry some other credential on scoped hosts (default: strip them).'),
  })
  .describe('A secret the sandbox sees only as a format-preserving surrogate.');

export const SigningCredentialSchema = z
  .strictObject({
    type: z.literal('aws-sigv4').describe('Credential kind; only `aws-sigv4` (SigV4 and SigV4A) exists.'),
    access_key_id: z.string().min(1, 'access_key_id cannot be empty').describe('Real AWS access key id.'),
    secret_access_key: z.string().min(1, 'secret_access_key cannot be empty').describe('Real AWS secret key.'),
    session_token: z.string().nullish().describe('Real STS session token, if the credentials are temporary.'),
    scopes: scopeList.describe(
      'Hosts (fnmatch) where requests are re-signed, e.g. `*.amazonaws.com`; on the default port only unless the ' +
        'pattern names one (`minio.internal:9000`).',
    ),
  })
  .describe('AWS credentials the proxy signs with; the sandbox only gets surrogates.');

const SIZE = /^(\d+)([bkmgBKMG])$/;
const SIZE_UNITS: Record<string, number> = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/**
 * Bytes in a size written as `512m`, `2g`, `1024k` or `4096b` (binary units, as the engines read them). Only ever
 * called with a size the schema accepted, so a malformed one is a bug in airlock (an invariant, not a user error).
 */
export function sizeBytes(size: string): number {
  const m = SIZE.exec(size);
  if (!m) throw new Error(`invariant broken: not a size: '${size}' (the schema refuses it)`);
  return Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!;
}

const size = (min: number, tooSmall: string) =>
  z
    .string()
    .regex(SIZE, "expected a size such as '512m', '2g' or '1024k'")
    .refine((m) => !SIZE.test(m) || sizeBytes(m) >= min, tooSmall); // zod runs the refinement after a failed regex too

/** Directories that become size-limited tmpfs mounts when `resource_limits.disk` makes the image read-only. */
export const DISK_LIMITED_SCRATCH = ['/tmp', '/var/tmp', '/run', '/root', '/home'] as const;

export const ResourceLimitsSchema = z
  .strictObject({
    timeout: z
      .number()
      .int('timeout is whole seconds')
      .min(10, 'timeout must be at least 10 seconds')
      .optional()
      .describe('Wall-clock limit in seconds; the container is killed and airlock exits 124.'),
    memory: size(1, 'the memory limit must be greater than zero')
      .optional()
      .describe('Memory limit (no extra swap), e.g. `2g`; OOM exits 137.'),
    disk: size(1024 ** 2, 'the disk limit must be at least 1m')
      .optional()
      .describe(
        'Caps what the command can write outside the workspace: the image becomes read-only and /tmp, /var/tmp, ' +
          '/run, /root and /home become tmpfs mounts of at most this size each (memory-backed, so they also count ' +
          'against `memory`), e.g. `2g`. The workspace and other mounts are not limited.',
      ),
    cpus: z.number().min(0.01, 'cpus must be at least 0.01').optional().describe('CPU limit, e.g. `1.5`.'),
    pids_limit: z
      .number()
      .int()
      .min(1, 'pids_limit must be at least 1')
      .optional()
      .describe('Maximum number of processes in the container.'),
    require: z
      .boolean()
      .default(false)
      .describe(
        'Refuse to run (exit 125) when the engine cannot enforce pids_limit, memory or cpus on this host (rootless ' +
          'Podman on cgroup v1, or on v2 without a cgroup or controller delegated to the user, Docker without the ' +
          'controller). Default false: the run goes ahead and airlock warns which limit is not enforced and why.',
      ),
  })
  .describe('Container resource limits; each is optional.');

/**
 * An `upstream_hosts` target as the proxy reads it: an IP address, optionally with a port (`10.0.0.5`,
 * `10.0.0.5:8443`, `[fd00::1]:443`). Null for anything else.
 */
export function parseHostsEntry(value: string): { address: string; port?: number } | null {
  if (isIPv4(value) || isIPv6(value)) return { address: value };
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(value);
  if (!m) return null;
  const address = m[1] ?? m[2]!;
  const port = Number(m[3]);
  if (!(isIPv4(address) || isIPv6(address)) || port < 1 || port > 65535) return null;
  return { address, port };
}

/**
 * `host-gateway` or `host-gateway:PORT`: the machine running airlock, as the proxy's egress network sees it. The
 * host replaces it with that network's gateway address when the proxy starts. Null for anything else.
 */
export function parseHostGateway(value: string): { port?: number } | null {
  const m = /^host-gateway(?::(\d{1,5}))?$/.exec(value);
  if (!m) return null;
  if (m[1] === undefined) return {};
  const port = Number(m[1]);
  return port >= 1 && port <= 65535 ? { port } : null;
}

const upstreamTarget = z
  .string()
  .refine(
    (v) => parseHostGateway(v) !== null || parseHostsEntry(v) !== null,
    'expected an IP address, optionally with a port (`10.0.0.5`, `10.0.0.5:8443`, `[fd00::1]:443`), or `host-gateway[:PORT]` for the machine running airlock',
  );

/** A resolver: an IP address, optionally with a port (`10.0.0.53:5353`, `[fd00::53]:5353`). */
export function isResolverAddress(value: string): boolean {
  if (isIPv4(value) || isIPv6(value)) return true;
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  if (!m || Number(m[3]) < 1 || Number(m[3]) > 65535) return false;
  // Brackets are for IPv6 only: `[10.0.0.1]:53` is refused, as a URL would.
  return m[1] !== undefined ? isIPv6(m[1]) : isIPv4(m[2]!);
}

export const SandboxConfigSchema = z
  .strictObject({
    env: z
      .record(envName, z.string())
      .nullish()
      .transform((v) => v ?? {})
      .describe('Variables set in the container (values may use `!env NAME`).'),
    pass_env: z
      .array(envName)
      .nullish()
      .transform((v) => v ?? [])
      .describe('Host variables copied into the container when set on the host.'),
    masked_secrets: z
      .record(envName, MaskedSecretSchema)
      .nullish()
      .transform((v) => v ?? {})
      .describe('Secrets the sandbox sees as surrogates; the key is the container variable name.'),
    signing_credentials: z
      .record(z.string().min(1), SigningCredentialSchema)
      .nullish()
      .transform((v) => v ?? {})
      .describe('AWS credentials re-signed by the proxy.'),
    network_sandbox: z
      .boolean()
      .nullish()
      .transform((v) => v ?? true)
      .describe('Route all traffic through the allowlisting proxy (default true). false = unrestricted network.'),
    resource_limits: ResourceLimitsSchema.nullish().transform((v) => v ?? ResourceLimitsSchema.parse({})),
    image: z.string().min(1).optional().describe('Prebuilt image to run instead of building container/Dockerfile.'),
    upstream_dns: z
      .union([z.string(), z.array(z.string())])
      .optional()
      .transform((v) => (v === undefined ? [] : typeof v === 'string' ? [v] : v))
      .refine(
        (l) => l.every(isResolverAddress),
        'upstream_dns lists resolver IP addresses, optionally with a port (`10.0.0.53`, `10.0.0.53:5353`, `[fd00::53]:5353`)',
      )
      .describe(
        "Resolvers the proxy uses for upstream names (default: the host's resolvers); `IP` or `IP:PORT` (`[v6]:PORT`).",
      ),
    upstream_hosts: z
      .record(
        z
          .string()
          .refine((h) => normalizeHost(h) !== null, 'a key is a host name, optionally with a port (`name:5000`)')
          .refine((h) => {
            const port = explicitPort(h);
            return port === null || (port >= 1 && port <= 65535);
          }, 'the port must be between 1 and 65535'),
        upstreamTarget,
      )
      .optional()
      .transform((v) => v ?? {})
      .describe(
        'Fixed upstream addresses by name, like /etc/hosts for the proxy (also lifts the private-address guard for that exact name). `host-gateway[:PORT]` is the machine running airlock. ' +
          "The upstream port is the value's port, else the port the sandbox connected to (never one written in the request); a key with a port (`name:5000`) maps only requests to that port.",
      ),
    upstream_ca_file: z
      .string()
      .min(1)
      .optional()
      .describe(
        'PEM bundle the proxy trusts for upstream TLS in addition to the system roots (relative to the config directory).',
      ),
  })
  .describe('airlock sandbox configuration (.airlock/sandbox.yaml).');

export type SandboxConfig = z.output<typeof SandboxConfigSchema>;
export type MaskedSecretConfig = z.output<typeof MaskedSecretSchema>;
export type SigningCredentialConfig = z.output<typeof SigningCredentialSchema>;
export type ResourceLimits = z.output<typeof ResourceLimitsSchema>;
