/**
 * The Kubernetes objects of one sandboxed run (docs/kubernetes.md), built as data so every security property is
 * unit-tested and schema-validated, and so `airlock kube manifests` prints exactly what `airlock run --engine
 * kubernetes` creates. Pure: no I/O. The types come from the Kubernetes API's published schemas (kubernetes-models,
 * compile time only), so a misspelt field is a type error here rather than a field the API server drops.
 *
 * Per run, in creation order: the proxy's configuration Secret (CA key, real credentials: only the proxy pod mounts
 * it), the sandbox's environment Secret, the CA certificate ConfigMap, two NetworkPolicies, the proxy pod, and —
 * once the proxy pod has an IP — the sandbox pod, whose first (init) container proves the NetworkPolicy enforced.
 */
import path from 'node:path';
import type {
  INetworkPolicy,
  INetworkPolicyEgressRule,
  INetworkPolicyPeer,
  INetworkPolicyPort,
  INetworkPolicySpec,
} from 'kubernetes-models/networking.k8s.io/v1';
import type { IRole, IRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import type {
  IConfigMap,
  IContainer,
  IEnvVar,
  IPod,
  IPodSecurityContext,
  IPodSpec,
  ISeccompProfile,
  ISecret,
  ISecurityContext,
  IVolume,
  IVolumeMount,
} from 'kubernetes-models/v1';
import type { ProxyConfig } from '../../protocol/proxy-wire.js';
import {
  CANARY_PORT,
  encodeProbeArgs,
  PROXY_CONFIG_DIR,
  PROXY_CONFIG_KEY,
  PROXY_MODE,
  PROXY_POD_ENV,
  PROXY_POD_PORTS,
  type ProbeTarget,
} from '../../protocol/proxy-pod.js';
import { DISK_LIMITED_SCRATCH, sizeBytes } from '../../protocol/sandbox-config.js';
import { KEPT_CAPABILITIES } from '../engine/run-args.js';
import { PROXY_UID } from '../session/proxy-image.js';
import { SANDBOX_CA_PATH, SYSTEM_CA_BUNDLES } from '../session/ca.js';

type ObjectMeta = NonNullable<IPod['metadata']>;

export const KUBE_LABEL = {
  run: 'io.airlock.run',
  role: 'io.airlock.role',
  ownerPod: 'io.airlock.owner-pod',
  managedBy: 'app.kubernetes.io/managed-by',
} as const;

export type KubeRole = 'proxy' | 'sandbox' | 'config';

/** The CA certificate's directory and file name in the sandbox (the ConfigMap is mounted there). */
export const SANDBOX_CA_DIR = path.posix.dirname(SANDBOX_CA_PATH);
export const SANDBOX_CA_FILE = path.posix.basename(SANDBOX_CA_PATH);

/** What the proxy pod's Secret holds: the stdin configuration minus the address the pod only learns when it runs. */
export type ProxyPodConfig = Omit<ProxyConfig, 'sandboxAddress'>;

export type SeccompChoice = { type: 'Localhost'; localhostProfile: string } | { type: 'RuntimeDefault' };

/** The default Localhost profile path: docs/seccomp-profile.json installed under the kubelet's seccomp root. */
export const DEFAULT_SECCOMP_PROFILE = 'airlock/seccomp-profile.json';

export interface WorkspaceVolume {
  /** The runner's PersistentVolumeClaim (ARC's `work` volume). */
  claimName: string;
  /** The checkout's path inside the volume. */
  subPath?: string;
}

export interface KubeRunPlan {
  namespace: string;
  runId: string;
  /** The runner pod: every object is owned by it, so the garbage collector removes them with it. */
  owner?: { name: string; uid: string };
  /** Pin the sandbox to the runner's node (a ReadWriteOnce workspace volume is only mountable there). */
  nodeName?: string;
  images: { proxy: string; sandbox: string };
  proxyConfig: ProxyPodConfig;
  caCertPem: string;
  sandbox: {
    command: string[];
    workdir: string;
    /** null: an empty `/workspace` (emptyDir). */
    workspace: WorkspaceVolume | null;
    limits: { memory?: string; cpus?: number; disk?: string };
    seccomp: SeccompChoice;
    /** `hostUsers: false`: the pod gets its own user namespace (root inside is not root on the node). */
    userNamespace: boolean;
  };
  /** Targets the NetworkPolicy probe must fail to reach besides the canary (the API server). */
  forbiddenTargets: ProbeTarget[];
  /** Upper bound on each pod's life: a run that airlock can no longer stop ends by itself. */
  activeDeadlineSeconds: number;
  /** Resolvers the proxy may use (upstream_dns); empty: the cluster's DNS. */
  upstreamDns: string[];
  /** Fixed upstream addresses (upstream_hosts values): allowed through the proxy's egress policy. */
  upstreamAddresses: string[];
  /** Ports allowlist entries name (`registry.internal:5000`): the proxy listens on each, the sandbox may reach them. */
  declaredPorts?: number[];
}

export interface KubeNames {
  proxyPod: string;
  sandboxPod: string;
  proxyConfig: string;
  sandboxEnv: string;
  ca: string;
  proxyPolicy: string;
  sandboxPolicy: string;
}

export function kubeNames(runId: string): KubeNames {
  return {
    proxyPod: `airlock-proxy-${runId}`,
    sandboxPod: `airlock-sandbox-${runId}`,
    proxyConfig: `airlock-proxy-config-${runId}`,
    sandboxEnv: `airlock-sandbox-env-${runId}`,
    ca: `airlock-ca-${runId}`,
    proxyPolicy: `airlock-proxy-${runId}`,
    sandboxPolicy: `airlock-sandbox-${runId}`,
  };
}

export function kubeLabels(plan: Pick<KubeRunPlan, 'runId' | 'owner'>, role: KubeRole): Record<string, string> {
  return {
    [KUBE_LABEL.managedBy]: 'airlock',
    [KUBE_LABEL.run]: plan.runId,
    [KUBE_LABEL.role]: role,
    ...(plan.owner ? { [KUBE_LABEL.ownerPod]: plan.owner.name } : {}),
  };
}

/** The label selector that finds every object of one run (clean-up, `kubectl delete -l`). */
export function runSelector(runId: string): string {
  return `${KUBE_LABEL.managedBy}=airlock,${KUBE_LABEL.run}=${runId}`;
}

function metadata(plan: KubeRunPlan, name: string, role: KubeRole): ObjectMeta {
  return {
    name,
    namespace: plan.namespace,
    labels: kubeLabels(plan, role),
    ...(plan.owner
      ? {
          ownerReferences: [
            // Not a controller, and no blockOwnerDeletion: that would need `update` on pods/finalizers.
            { apiVersion: 'v1', kind: 'Pod', name: plan.owner.name, uid: plan.owner.uid },
          ],
        }
      : {}),
  };
}

const roleSelector = (plan: KubeRunPlan, role: KubeRole): INetworkPolicySpec['podSelector'] => ({
  matchLabels: { [KUBE_LABEL.run]: plan.runId, [KUBE_LABEL.role]: role },
});

/**
 * DNS on both transports, HTTP, HTTPS and the ports the allowlist names: the only ports the sandbox may use, and
 * only toward the proxy.
 */
function proxyServicePorts(plan: KubeRunPlan): INetworkPolicyPort[] {
  return [
    { protocol: 'UDP', port: PROXY_POD_PORTS.dns },
    { protocol: 'TCP', port: PROXY_POD_PORTS.dns },
    { protocol: 'TCP', port: PROXY_POD_PORTS.http },
    { protocol: 'TCP', port: PROXY_POD_PORTS.https },
    ...(plan.declaredPorts ?? []).map((port): INetworkPolicyPort => ({ protocol: 'TCP', port })),
  ];
}

/**
 * Address space the proxy must never be steered into (its own address guard refuses it too; the policy makes the
 * cluster say no as well): private, CGNAT, link-local (cloud metadata), loopback, "this network", and IPv6 ULA and
 * link-local.
 */
export const PROXY_EGRESS_EXCEPT_V4 = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.168.0.0/16',
];
export const PROXY_EGRESS_EXCEPT_V6 = ['fc00::/7', 'fe80::/10', '::1/128'];

function hostCidr(address: string): string {
  return address.includes(':') ? `${address}/128` : `${address}/32`;
}

/** `IP`, `IP:PORT` or `[IPv6]:PORT` (upstream_hosts values) → the address and the port, if any. */
export function splitHostPort(entry: string): { address: string; port?: number } {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
  if (v6) return v6[2] ? { address: v6[1]!, port: Number(v6[2]) } : { address: v6[1]! };
  const v4 = /^([^:]+):(\d+)$/.exec(entry);
  if (v4) return { address: v4[1]!, port: Number(v4[2]) };
  return { address: entry };
}

export function networkPolicies(plan: KubeRunPlan): INetworkPolicy[] {
  const names = kubeNames(plan.runId);
  const sandboxPeer: INetworkPolicyPeer = { podSelector: roleSelector(plan, 'sandbox') };
  const proxyPeer: INetworkPolicyPeer = { podSelector: roleSelector(plan, 'proxy') };
  const dnsPorts: INetworkPolicyPort[] = [
    { protocol: 'UDP', port: 53 },
    { protocol: 'TCP', port: 53 },
  ];
  const resolvers: INetworkPolicyEgressRule[] =
    plan.upstreamDns.length > 0
      ? [
          {
            to: plan.upstreamDns.map((a) => ({ ipBlock: { cidr: hostCidr(splitHostPort(a).address) } })),
            ports: dnsPorts,
          },
        ]
      : [
          {
            // The cluster's DNS (CoreDNS keeps the kube-dns label in every mainstream distribution).
            to: [
              {
                namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
                podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
              },
            ],
            ports: dnsPorts,
          },
        ];
  const fixedUpstreams = plan.upstreamAddresses.map((entry): INetworkPolicyEgressRule => {
    const { address, port } = splitHostPort(entry);
    return {
      to: [{ ipBlock: { cidr: hostCidr(address) } }],
      ...(port ? { ports: [{ protocol: 'TCP' as const, port }] } : {}),
    };
  });
  return [
    {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: metadata(plan, names.sandboxPolicy, 'sandbox'),
      spec: {
        podSelector: roleSelector(plan, 'sandbox'),
        policyTypes: ['Ingress', 'Egress'],
        // No ingress rule: nothing may connect to the sandbox.
        ingress: [],
        egress: [{ to: [proxyPeer], ports: proxyServicePorts(plan) }],
      },
    },
    {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: metadata(plan, names.proxyPolicy, 'proxy'),
      spec: {
        podSelector: roleSelector(plan, 'proxy'),
        policyTypes: ['Ingress', 'Egress'],
        ingress: [
          {
            from: [sandboxPeer],
            // The canary is admitted here on purpose: only the sandbox's own egress policy may be what stops it.
            ports: [...proxyServicePorts(plan), { protocol: 'TCP', port: CANARY_PORT }],
          },
        ],
        egress: [
          ...resolvers,
          {
            to: [
              { ipBlock: { cidr: '0.0.0.0/0', except: PROXY_EGRESS_EXCEPT_V4 } },
              { ipBlock: { cidr: '::/0', except: PROXY_EGRESS_EXCEPT_V6 } },
            ],
          },
          ...fixedUpstreams,
        ],
      },
    },
  ];
}

/** Nothing a container of ours may do beyond its job; the sandbox adds back exactly Airut's five capabilities. */
function containerSecurity(extra: Partial<ISecurityContext>): ISecurityContext {
  return {
    allowPrivilegeEscalation: false,
    privileged: false,
    capabilities: { drop: ['ALL'] },
    ...extra,
  };
}

const proxyUser: ISecurityContext = {
  runAsUser: PROXY_UID,
  runAsGroup: PROXY_UID,
  runAsNonRoot: true,
  readOnlyRootFilesystem: true,
};

const commonPodSpec = (plan: KubeRunPlan): Omit<IPodSpec, 'containers'> => ({
  restartPolicy: 'Never',
  automountServiceAccountToken: false,
  enableServiceLinks: false,
  hostNetwork: false,
  hostPID: false,
  hostIPC: false,
  shareProcessNamespace: false,
  activeDeadlineSeconds: plan.activeDeadlineSeconds,
  terminationGracePeriodSeconds: 5,
});

export function proxyPod(plan: KubeRunPlan): IPod {
  const names = kubeNames(plan.runId);
  const podSecurity: IPodSecurityContext = {
    runAsNonRoot: true,
    runAsUser: PROXY_UID,
    runAsGroup: PROXY_UID,
    // Makes the mounted Secret group-readable by the proxy's user at mode 0440.
    fsGroup: PROXY_UID,
    seccompProfile: { type: 'RuntimeDefault' },
    // Ports 53/80/443 without NET_BIND_SERVICE: a namespaced sysctl on Kubernetes' "safe" list.
    sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }],
  };
  const env: IEnvVar[] = [
    { name: PROXY_POD_ENV.configFile, value: `${PROXY_CONFIG_DIR}/${PROXY_CONFIG_KEY}` },
    { name: PROXY_POD_ENV.podIp, valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
    { name: PROXY_POD_ENV.canaryPort, value: String(CANARY_PORT) },
  ];
  const container: IContainer = {
    name: 'proxy',
    image: plan.images.proxy,
    imagePullPolicy: 'IfNotPresent',
    args: [PROXY_MODE.pod],
    env,
    ports: [
      { name: 'dns-udp', containerPort: PROXY_POD_PORTS.dns, protocol: 'UDP' },
      { name: 'dns-tcp', containerPort: PROXY_POD_PORTS.dns, protocol: 'TCP' },
      { name: 'http', containerPort: PROXY_POD_PORTS.http, protocol: 'TCP' },
      { name: 'https', containerPort: PROXY_POD_PORTS.https, protocol: 'TCP' },
      { name: 'canary', containerPort: CANARY_PORT, protocol: 'TCP' },
      ...(plan.declaredPorts ?? []).map((port) => ({
        name: `port-${port}`,
        containerPort: port,
        protocol: 'TCP' as const,
      })),
    ],
    volumeMounts: [{ name: 'proxy-config', mountPath: PROXY_CONFIG_DIR, readOnly: true }],
    securityContext: containerSecurity({ ...proxyUser, seccompProfile: { type: 'RuntimeDefault' } }),
    resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '1Gi' } },
  };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: metadata(plan, names.proxyPod, 'proxy'),
    spec: {
      ...commonPodSpec(plan),
      ...(plan.nodeName ? { nodeName: plan.nodeName } : {}),
      securityContext: podSecurity,
      containers: [container],
      volumes: [
        {
          name: 'proxy-config',
          secret: { secretName: names.proxyConfig, defaultMode: 0o440, optional: false },
        },
      ],
    },
  };
}

/** `PROXY_POD_IP` when the proxy's address is not known yet (`airlock kube manifests` without `--proxy-ip`). */
export const PROXY_IP_PLACEHOLDER = 'PROXY_POD_IP';

function scratchVolumes(disk: string, taken: Set<string>): { volumes: IVolume[]; mounts: IVolumeMount[] } {
  const volumes: IVolume[] = [];
  const mounts: IVolumeMount[] = [];
  for (const dir of DISK_LIMITED_SCRATCH) {
    if (taken.has(dir)) continue;
    const name = `scratch${dir.replace(/\//g, '-')}`;
    // Memory-backed like the tmpfs mounts under Podman/Docker: sized, counted against the memory limit, and never
    // on the node's disk.
    volumes.push({ name, emptyDir: { medium: 'Memory', sizeLimit: String(sizeBytes(disk)) } });
    mounts.push({ name, mountPath: dir });
  }
  return { volumes, mounts };
}

export function sandboxPod(plan: KubeRunPlan, proxyIp: string | null): IPod {
  const names = kubeNames(plan.runId);
  const ip = proxyIp ?? PROXY_IP_PLACEHOLDER;
  const s = plan.sandbox;
  const seccompProfile: ISeccompProfile =
    s.seccomp.type === 'Localhost'
      ? { type: 'Localhost', localhostProfile: s.seccomp.localhostProfile }
      : { type: 'RuntimeDefault' };
  const volumes: IVolume[] = [
    { name: 'airlock-ca', configMap: { name: names.ca, optional: false } },
    s.workspace
      ? { name: 'workspace', persistentVolumeClaim: { claimName: s.workspace.claimName } }
      : { name: 'workspace', emptyDir: {} },
  ];
  const mounts: IVolumeMount[] = [
    {
      name: 'workspace',
      mountPath: s.workdir,
      ...(s.workspace?.subPath ? { subPath: s.workspace.subPath } : {}),
    },
    { name: 'airlock-ca', mountPath: SANDBOX_CA_DIR, readOnly: true },
    ...SYSTEM_CA_BUNDLES.map((path) => ({
      name: 'airlock-ca',
      mountPath: path,
      subPath: SANDBOX_CA_FILE,
      readOnly: true,
    })),
  ];
  if (s.limits.disk !== undefined) {
    const scratch = scratchVolumes(s.limits.disk, new Set([s.workdir]));
    volumes.push(...scratch.volumes);
    mounts.push(...scratch.mounts);
  }
  const limits: Record<string, string> = {};
  if (s.limits.memory !== undefined) limits.memory = String(sizeBytes(s.limits.memory));
  if (s.limits.cpus !== undefined) limits.cpu = String(s.limits.cpus);
  const probe: IContainer = {
    name: 'netpolicy-probe',
    image: plan.images.proxy,
    imagePullPolicy: 'IfNotPresent',
    args: [
      PROXY_MODE.networkPolicyProbe,
      ...encodeProbeArgs({
        allowed: { host: ip, port: PROXY_POD_PORTS.https },
        forbidden: [{ host: ip, port: CANARY_PORT }, ...plan.forbiddenTargets],
        deadlineMs: 20_000,
      }),
    ],
    terminationMessagePolicy: 'FallbackToLogsOnError',
    securityContext: containerSecurity({ ...proxyUser, seccompProfile: { type: 'RuntimeDefault' } }),
    resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '128Mi' } },
  };
  const command: IContainer = {
    name: 'sandbox',
    image: plan.images.sandbox,
    imagePullPolicy: 'IfNotPresent',
    command: s.command,
    workingDir: s.workdir,
    envFrom: [{ secretRef: { name: names.sandboxEnv, optional: false } }],
    volumeMounts: mounts,
    securityContext: containerSecurity({
      capabilities: { drop: ['ALL'], add: [...KEPT_CAPABILITIES] },
      readOnlyRootFilesystem: s.limits.disk !== undefined,
      seccompProfile,
    }),
    ...(Object.keys(limits).length > 0 ? { resources: { limits, requests: limits } } : {}),
  };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: metadata(plan, names.sandboxPod, 'sandbox'),
    spec: {
      ...commonPodSpec(plan),
      ...(plan.nodeName ? { nodeName: plan.nodeName } : {}),
      ...(s.userNamespace ? { hostUsers: false } : {}),
      // The proxy is the only resolver; it answers every name with its own address and never forwards.
      dnsPolicy: 'None',
      dnsConfig: { nameservers: [ip], searches: [], options: [{ name: 'ndots', value: '1' }] },
      securityContext: { seccompProfile },
      initContainers: [probe],
      containers: [command],
      volumes,
    },
  };
}

export function proxyConfigSecret(plan: KubeRunPlan, configJson: string): ISecret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: metadata(plan, kubeNames(plan.runId).proxyConfig, 'config'),
    type: 'Opaque',
    immutable: true,
    stringData: { [PROXY_CONFIG_KEY]: configJson },
  };
}

export function sandboxEnvSecret(plan: KubeRunPlan, env: Record<string, string>): ISecret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: metadata(plan, kubeNames(plan.runId).sandboxEnv, 'config'),
    type: 'Opaque',
    immutable: true,
    stringData: env,
  };
}

export function caConfigMap(plan: KubeRunPlan): IConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: metadata(plan, kubeNames(plan.runId).ca, 'config'),
    immutable: true,
    data: { [SANDBOX_CA_FILE]: plan.caCertPem },
  };
}

export type RunObject = ISecret | IConfigMap | INetworkPolicy | IPod;

/**
 * Everything of one run in creation order. The Secrets' contents are given separately so that `kube manifests` can
 * print placeholders where `run` sends real values.
 */
export function runManifests(
  plan: KubeRunPlan,
  secrets: { proxyConfigJson: string; sandboxEnv: Record<string, string> },
  proxyIp: string | null,
): RunObject[] {
  return [
    proxyConfigSecret(plan, secrets.proxyConfigJson),
    sandboxEnvSecret(plan, secrets.sandboxEnv),
    caConfigMap(plan),
    ...networkPolicies(plan),
    proxyPod(plan),
    sandboxPod(plan, proxyIp),
  ];
}

/** What the runner's service account needs in the run namespace, and nothing else. */
export function runnerRbac(namespace: string, serviceAccount: string): [IRole, IRoleBinding] {
  const name = 'airlock-runner';
  return [
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name, namespace, labels: { [KUBE_LABEL.managedBy]: 'airlock' } },
      rules: [
        // get: the runner's own pod (owner reference, workspace volume, node); watch: pod phases; list: the
        // watch's initial state.
        { apiGroups: [''], resources: ['pods'], verbs: ['create', 'delete', 'get', 'list', 'watch'] },
        { apiGroups: [''], resources: ['pods/log'], verbs: ['get'] },
        // Never get/list: airlock writes its Secrets and never reads any back.
        { apiGroups: [''], resources: ['secrets', 'configmaps'], verbs: ['create', 'delete'] },
        { apiGroups: ['networking.k8s.io'], resources: ['networkpolicies'], verbs: ['create', 'delete'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name, namespace, labels: { [KUBE_LABEL.managedBy]: 'airlock' } },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
      subjects: [{ kind: 'ServiceAccount', name: serviceAccount, namespace }],
    },
  ];
}
