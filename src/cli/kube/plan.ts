/**
 * From a loaded policy and the command line to a KubeRunPlan (what manifests.ts renders): images, workspace volume,
 * seccomp choice, the proxy's configuration and the sandbox's environment. Shared by `airlock run --engine
 * kubernetes` and `airlock kube manifests`, so both produce the same objects.
 */
import path from 'node:path';
import type { IPod } from 'kubernetes-models/v1';
import { declaredPorts } from '../../protocol/policy.js';
import { CANARY_PORT, PROXY_POD_PORTS } from '../../protocol/proxy-pod.js';
import type { LoadedPolicy } from '../config/types.js';
import { ConfigError, UsageError } from '../errors.js';
import type { PreparedCredentials } from '../secrets/prepare.js';
import type { RunCa } from '../session/ca.js';
import { WORKSPACE } from '../session/mounts.js';
import { CA_ENV_VARIABLES, SANDBOX_CA_PATH } from '../session/ca.js';
import { resolveUpstreamHosts } from '../session/proxy-args.js';
import {
  DEFAULT_SECCOMP_PROFILE,
  type KubeRunPlan,
  type ProxyPodConfig,
  type SeccompChoice,
  type WorkspaceVolume,
} from './manifests.js';

/** Kubernetes-only options, shared by `run --engine kubernetes` and `kube manifests`. */
export const KUBE_OPTIONS = {
  namespace: { type: 'string' },
  'proxy-image': { type: 'string' },
  'workspace-claim': { type: 'string' },
  seccomp: { type: 'string' },
  'user-namespace': { type: 'boolean', default: false },
} as const;

export interface KubeFlags {
  namespace?: string;
  'proxy-image'?: string;
  'workspace-claim'?: string;
  seccomp?: string;
  'user-namespace'?: boolean;
  image?: string;
}

/** `localhost[:PROFILE]` (default) or `runtime-default`. */
export function parseSeccompFlag(value: string | undefined): SeccompChoice {
  if (value === undefined || value === 'localhost')
    return { type: 'Localhost', localhostProfile: DEFAULT_SECCOMP_PROFILE };
  if (value === 'runtime-default') return { type: 'RuntimeDefault' };
  const m = /^localhost:([\w.\-/]+)$/.exec(value);
  if (m && !m[1]!.split('/').includes('..')) return { type: 'Localhost', localhostProfile: m[1]! };
  throw new UsageError(`--seccomp must be localhost, localhost:PROFILE or runtime-default, not '${value}'`);
}

/** `CLAIM[:SUBPATH]`. */
export function parseWorkspaceClaim(value: string): WorkspaceVolume {
  const at = value.indexOf(':');
  const claimName = at < 0 ? value : value.slice(0, at);
  const subPath = at < 0 ? '' : value.slice(at + 1).replace(/^\/+|\/+$/g, '');
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(claimName)) {
    throw new UsageError(`--workspace-claim: '${claimName}' is not a PersistentVolumeClaim name`);
  }
  if (subPath.split('/').includes('..')) throw new UsageError('--workspace-claim: the sub-path may not contain ..');
  return subPath ? { claimName, subPath } : { claimName };
}

/**
 * The runner pod's volume that holds `cwd` (ARC's kubernetes mode mounts a PersistentVolumeClaim named `work` at
 * the runner's work directory), as the claim and the checkout's path inside it.
 */
export function workspaceFromRunnerPod(pod: IPod, cwd: string): WorkspaceVolume | null {
  const volumes = pod.spec?.volumes ?? [];
  let best: { mountPath: string; volume: string; subPath?: string } | null = null;
  for (const container of pod.spec?.containers ?? []) {
    for (const mount of container.volumeMounts ?? []) {
      const rel = path.posix.relative(mount.mountPath, cwd);
      if (rel.startsWith('..') || path.posix.isAbsolute(rel)) continue;
      if (!best || mount.mountPath.length > best.mountPath.length) {
        best = { mountPath: mount.mountPath, volume: mount.name, ...(mount.subPath ? { subPath: mount.subPath } : {}) };
      }
    }
  }
  if (!best) return null;
  const volume = volumes.find((v) => v.name === best.volume);
  const claimName =
    volume?.persistentVolumeClaim?.claimName ??
    // A generic ephemeral volume's claim is named <pod>-<volume> by the ephemeral volume controller.
    (volume?.ephemeral ? `${pod.metadata?.name}-${volume.name}` : undefined);
  if (!claimName) return null;
  const subPath = path.posix.join(best.subPath ?? '', path.posix.relative(best.mountPath, cwd));
  return subPath && subPath !== '.' ? { claimName, subPath } : { claimName };
}

export function sandboxImage(policy: LoadedPolicy, flag: string | undefined): string {
  const image = flag ?? policy.sandbox.image;
  if (image) return image;
  throw new UsageError(
    'on Kubernetes the sandbox image comes from a registry: build .airlock/container/Dockerfile, push it, and ' +
      'name it with --image REF or `image:` in sandbox.yaml (docs/kubernetes.md#images)',
  );
}

export function proxyImage(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  const image = flag ?? env.AIRLOCK_PROXY_IMAGE;
  if (image) return image;
  throw new UsageError(
    'on Kubernetes the proxy image comes from a registry: push the image `airlock run` builds ' +
      '(localhost/airlock-proxy:<hash>) and name it with --proxy-image REF or AIRLOCK_PROXY_IMAGE ' +
      '(docs/kubernetes.md#images)',
  );
}

/** The proxy pod's configuration: the stdin configuration of the Podman path, listening on the pod's ports. */
export function proxyPodConfig(
  policy: LoadedPolicy,
  credentials: PreparedCredentials,
  ca: RunCa,
  runId: string,
  upstreamCaPem: string | undefined,
  ownAddresses: string[],
): ProxyPodConfig {
  if (Object.values(policy.sandbox.upstream_hosts).some((t) => t.startsWith('host-gateway'))) {
    throw new ConfigError('upstream_hosts: host-gateway has no meaning on Kubernetes; give the address instead');
  }
  const ports = declaredPorts(policy.allowlist);
  if (ports.includes(CANARY_PORT)) {
    throw new ConfigError(
      `network allowlist: port ${CANARY_PORT} is the canary's on Kubernetes (a port the sandbox must not reach); ` +
        'serve the upstream on another port, or map it with upstream_hosts',
    );
  }
  const config: ProxyPodConfig = {
    version: 1,
    allowlist: policy.allowlist,
    ca,
    listen: {
      host: '0.0.0.0',
      http: PROXY_POD_PORTS.http,
      https: PROXY_POD_PORTS.https,
      dns: PROXY_POD_PORTS.dns,
      ports,
    },
    upstream: {
      dns: policy.sandbox.upstream_dns,
      hosts: resolveUpstreamHosts(policy.sandbox.upstream_hosts, null),
      connectTimeoutMs: 10_000,
      hostAddresses: ownAddresses,
    },
    credentials: credentials.proxyCredentials,
    run: { id: runId, policySha256: policy.allowlistSha256 },
    log: { stdout: true },
  };
  if (upstreamCaPem) config.upstream.caPem = upstreamCaPem;
  return config;
}

const REDACTED = (what: string) => `<redacted: ${what}; airlock run fills it in, --with-secrets prints it>`;

/** The configuration with every secret value replaced by a placeholder that says what goes there. */
export function redactProxyConfig(config: ProxyPodConfig): ProxyPodConfig {
  return {
    ...config,
    ca: { certPem: config.ca.certPem, keyPem: REDACTED('the per-run CA key') },
    credentials: {
      masked: config.credentials.masked.map((m) => ({ ...m, value: REDACTED(`masked_secrets.${m.name}.value`) })),
      signing: config.credentials.signing.map((s) => ({
        ...s,
        accessKeyId: REDACTED(`signing_credentials.${s.name}.access_key_id`),
        secretAccessKey: REDACTED(`signing_credentials.${s.name}.secret_access_key`),
        ...(s.sessionToken ? { sessionToken: REDACTED(`signing_credentials.${s.name}.session_token`) } : {}),
      })),
    },
  };
}

/** The CA variables of the Podman path, pointing at the mounted ConfigMap. */
export function caEnvironment(): Record<string, string> {
  return Object.fromEntries(CA_ENV_VARIABLES.map((v) => [v, SANDBOX_CA_PATH]));
}

export interface PlanInputs {
  policy: LoadedPolicy;
  flags: KubeFlags;
  env: NodeJS.ProcessEnv;
  command: string[];
  runId: string;
  namespace: string;
  caCertPem: string;
  proxyConfig: ProxyPodConfig;
  workspace: WorkspaceVolume | null;
  owner?: { name: string; uid: string };
  nodeName?: string;
  forbiddenTargets: KubeRunPlan['forbiddenTargets'];
  timeoutSeconds?: number;
}

/** A pod outlives neither its timeout nor GitHub's longest job (6 h) by more than a few minutes. */
export function activeDeadline(timeoutSeconds: number | undefined): number {
  return (timeoutSeconds ?? 6 * 3600) + 300;
}

export function buildPlan(i: PlanInputs): KubeRunPlan {
  const limits = i.policy.sandbox.resource_limits;
  return {
    namespace: i.namespace,
    runId: i.runId,
    ...(i.owner ? { owner: i.owner } : {}),
    ...(i.nodeName ? { nodeName: i.nodeName } : {}),
    images: { proxy: proxyImage(i.flags['proxy-image'], i.env), sandbox: sandboxImage(i.policy, i.flags.image) },
    proxyConfig: i.proxyConfig,
    caCertPem: i.caCertPem,
    sandbox: {
      command: i.command,
      workdir: WORKSPACE,
      workspace: i.workspace,
      limits: {
        ...(limits.memory !== undefined ? { memory: limits.memory } : {}),
        ...(limits.cpus !== undefined ? { cpus: limits.cpus } : {}),
        ...(limits.disk !== undefined ? { disk: limits.disk } : {}),
      },
      seccomp: parseSeccompFlag(i.flags.seccomp),
      userNamespace: i.flags['user-namespace'] === true,
    },
    forbiddenTargets: i.forbiddenTargets,
    activeDeadlineSeconds: activeDeadline(i.timeoutSeconds),
    upstreamDns: i.policy.sandbox.upstream_dns,
    upstreamAddresses: Object.values(i.proxyConfig.upstream.hosts),
    declaredPorts: i.proxyConfig.listen.ports ?? [],
  };
}

/** The API server as the sandbox would reach it: a target the NetworkPolicy probe must find unreachable. */
export function apiServerTarget(env: NodeJS.ProcessEnv): KubeRunPlan['forbiddenTargets'] {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = Number(env.KUBERNETES_SERVICE_PORT || '443');
  return host && /^[\d.]+$|:/.test(host) ? [{ host, port }] : [];
}
