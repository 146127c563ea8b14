/**
 * The network sandbox of one run, as pure functions of the run's facts: the networks' and the proxy container's
 * argv, the sandbox container's network arguments and the proxy's configuration. Nothing here runs a process, so
 * every property of the topology is a unit test away (test/unit/proxy-args.test.ts).
 *
 *   sandbox ──(internal network: no route out, no engine DNS, no host address)── proxy ──(egress network)── world
 *
 * The proxy container is airlock's own image, runs as an unprivileged user with every capability dropped and a
 * read-only root, and gets its configuration — the per-run CA key and real credential values included — over
 * stdin (proxy-process.ts), never argv or a file.
 */
import { declaredPorts } from '../../protocol/policy.js';
import type { CredentialConfig, ProxyConfig } from '../../protocol/proxy-wire.js';
import { parseHostGateway } from '../../protocol/sandbox-config.js';
import type { LoadedPolicy } from '../config/types.js';
import type { EngineKind } from '../engine/engine.js';
import type { HostLimits } from '../engine/host-limits.js';
import { SandboxError } from '../errors.js';
import type { RunCa } from './ca.js';
import { PROXY_UID } from './proxy-image.js';

export interface SandboxNetworks {
  /** The sandbox's only network; the proxy is its only other member. */
  internal: string;
  /** The proxy's way out. */
  egress: string;
}

/**
 * Internal: no route out, no engine DNS, and no address for the host on the bridge, so the sandbox can reach
 * nothing but the proxy (Podman gives internal bridges no IPv4 address; Docker needs inhibit_ipv4 for that).
 */
export function sandboxNetworkCreateArgs(kind: EngineKind, name: string, labels: string[]): string[] {
  return kind === 'podman'
    ? ['network', 'create', '--internal', '--disable-dns', ...labels, name]
    : ['network', 'create', '--internal', '-o', 'com.docker.network.bridge.inhibit_ipv4=true', ...labels, name];
}

export function egressNetworkCreateArgs(name: string, labels: string[]): string[] {
  return ['network', 'create', ...labels, name];
}

export interface ProxyContainerSpec {
  name: string;
  image: string;
  networks: SandboxNetworks;
  labels: string[];
  limits: HostLimits;
}

/**
 * How the proxy container comes up attached to airlock (stdin open, stdout read): the engine calls that must
 * succeed first, then the one whose process stays attached. Podman joins both networks in one `run`; Docker
 * creates the container on the internal network, connects it to the egress network, then starts it attached.
 */
export interface ProxyLaunch {
  prepare: Array<{ args: string[]; what: string }>;
  attach: string[];
}

export function proxyLaunch(kind: EngineKind, spec: ProxyContainerSpec): ProxyLaunch {
  const nofile = Math.min(spec.limits.nofile, 65536);
  const nproc = Math.min(spec.limits.nproc, 4096);
  const common = [
    '--name',
    spec.name,
    ...spec.labels,
    '--interactive',
    '--pull=never',
    '--log-driver=none',
    `--user=${PROXY_UID}:${PROXY_UID}`,
    '--read-only',
    '--cap-drop=ALL',
    '--security-opt=no-new-privileges',
    // Ports 53/80/443 (and those the allowlist names) without CAP_NET_BIND_SERVICE: a sysctl scoped to the proxy's
    // own network namespace.
    '--sysctl=net.ipv4.ip_unprivileged_port_start=0',
    '--pids-limit=512',
    `--ulimit=nofile=${nofile}:${nofile}`,
    `--ulimit=nproc=${nproc}:${nproc}`,
    '--network',
    spec.networks.internal,
  ];
  if (kind === 'podman') {
    return { prepare: [], attach: ['run', '--rm', ...common, '--network', spec.networks.egress, spec.image] };
  }
  return {
    prepare: [
      { args: ['create', '--rm', ...common, spec.image], what: 'creating the proxy container' },
      {
        args: ['network', 'connect', spec.networks.egress, spec.name],
        what: 'connecting the proxy to the egress network',
      },
    ],
    attach: ['start', '--attach', '--interactive', spec.name],
  };
}

/** The sandbox container's network arguments, placed before the image in `<engine> run`. */
export function sandboxNetworkRunArgs(networks: SandboxNetworks, proxyAddress: string): string[] {
  return [
    '--network',
    networks.internal,
    '--dns',
    proxyAddress,
    // No IPv6 at all in the sandbox: not even link-local, which would reach the host's side of the bridge.
    '--sysctl=net.ipv6.conf.all.disable_ipv6=1',
    '--sysctl=net.ipv6.conf.default.disable_ipv6=1',
  ];
}

/** `host-gateway[:PORT]` in upstream_hosts means the machine running airlock, as seen from the egress network. */
export function resolveUpstreamHosts(
  hosts: Record<string, string>,
  hostGateway: string | null,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, target] of Object.entries(hosts)) {
    const gateway = parseHostGateway(target);
    if (!gateway) {
      out[name.toLowerCase()] = target;
      continue;
    }
    if (!hostGateway)
      throw new SandboxError(
        `upstream_hosts.${name}: the egress network has no gateway address to use for host-gateway`,
      );
    out[name.toLowerCase()] = gateway.port === undefined ? hostGateway : `${hostGateway}:${gateway.port}`;
  }
  return out;
}

export interface ProxyConfigFacts {
  policy: LoadedPolicy;
  credentials: CredentialConfig;
  ca: RunCa;
  runId: string;
  /** The proxy's address on the sandbox network: the answer to every DNS query. */
  sandboxAddress: string;
  /** The egress network's gateway (for `host-gateway`), when it has one. */
  hostGateway: string | null;
  /** This machine's addresses, refused as upstream addresses (proxy-network.ts `hostAddresses`). */
  hostAddresses: string[];
  /** The contents of `upstream_ca_file`, when the policy names one. */
  upstreamCaPem?: string;
  /** Audit mode (`airlock run --audit`): policy refusals forwarded and logged `would_block`. */
  audit?: boolean;
}

/** The configuration the proxy container receives on stdin. */
export function proxyConfig(facts: ProxyConfigFacts): ProxyConfig {
  const { policy } = facts;
  return {
    version: 1,
    allowlist: policy.allowlist,
    ca: { certPem: facts.ca.certPem, keyPem: facts.ca.keyPem },
    sandboxAddress: facts.sandboxAddress,
    // The ports allowlist entries name get a listener each (the sysctl in proxyContainerArgs lets the proxy bind any
    // port).
    listen: { host: '0.0.0.0', http: 80, https: 443, dns: 53, ports: declaredPorts(policy.allowlist) },
    upstream: {
      dns: policy.sandbox.upstream_dns,
      hosts: resolveUpstreamHosts(policy.sandbox.upstream_hosts, facts.hostGateway),
      connectTimeoutMs: 10_000,
      hostAddresses: facts.hostAddresses,
      ...(facts.upstreamCaPem !== undefined ? { caPem: facts.upstreamCaPem } : {}),
    },
    credentials: facts.credentials,
    ...(facts.audit ? { audit: true } : {}),
    run: { id: facts.runId, policySha256: policy.allowlistSha256 },
    // The host collects the log from the proxy's stdout: nothing is written inside the read-only container.
    log: { stdout: true },
  };
}
