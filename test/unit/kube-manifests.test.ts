import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { ConfigMap, Pod, Secret, type IPod } from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';
import { main } from '../../src/cli/main.js';
import {
  networkPolicies,
  proxyPod,
  runManifests,
  runnerRbac,
  sandboxPod,
  type KubeRunPlan,
  type RunObject,
} from '../../src/cli/kube/manifests.js';
import { proxyPodConfig, workspaceFromRunnerPod, parseSeccompFlag } from '../../src/cli/kube/plan.js';
import type { LoadedPolicy } from '../../src/cli/config/types.js';
import type { PreparedCredentials } from '../../src/cli/secrets/prepare.js';
import { AllowlistSchema } from '../../src/protocol/allowlist.js';
import { SandboxConfigSchema } from '../../src/protocol/sandbox-config.js';
import { CANARY_PORT } from '../../src/protocol/proxy-pod.js';

/**
 * The objects of a run, validated against the Kubernetes API's published schemas (kubernetes-models 4.5: the
 * Kubernetes 1.33 OpenAPI definitions compiled by ajv), and checked for every security property docs/kubernetes.md
 * promises: what each pod may do, what each NetworkPolicy admits, where the secrets are.
 */

function plan(overrides: Partial<KubeRunPlan> = {}, sandbox: Partial<KubeRunPlan['sandbox']> = {}): KubeRunPlan {
  return {
    namespace: 'ci',
    runId: '0123456789ab',
    images: { proxy: 'registry.test/airlock-proxy:1', sandbox: 'registry.test/app:1' },
    proxyConfig: {} as KubeRunPlan['proxyConfig'],
    caCertPem: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
    sandbox: {
      command: ['sh', '-c', 'npm test'],
      workdir: '/workspace',
      workspace: { claimName: 'runner-work', subPath: 'app/app' },
      limits: {},
      seccomp: parseSeccompFlag(undefined),
      userNamespace: false,
      ...sandbox,
    },
    forbiddenTargets: [{ host: '10.96.0.1', port: 443 }],
    activeDeadlineSeconds: 3900,
    upstreamDns: [],
    upstreamAddresses: [],
    ...overrides,
  };
}

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  Pod: Pod,
  Secret: Secret,
  ConfigMap: ConfigMap,
  NetworkPolicy: NetworkPolicy,
  Role: Role,
  RoleBinding: RoleBinding,
};

function validate(object: object): void {
  const kind = (object as { kind?: string }).kind;
  const Model = MODELS[kind ?? ''];
  assert.ok(Model, `a schema for ${kind}`);
  new Model(structuredClone(object) as never).validate();
}

const VARIANTS: Array<[string, KubeRunPlan]> = [
  ['defaults', plan()],
  [
    'an owner, a node, RuntimeDefault, a user namespace',
    plan(
      { owner: { name: 'runner-abc', uid: 'u-1' }, nodeName: 'node-7' },
      { seccomp: { type: 'RuntimeDefault' }, userNamespace: true },
    ),
  ],
  ['memory, cpus and disk limits', plan({}, { limits: { memory: '2g', cpus: 1.5, disk: '512m' } })],
  [
    'an empty workspace, upstream DNS and fixed upstream addresses',
    plan(
      { upstreamDns: ['9.9.9.9'], upstreamAddresses: ['203.0.113.7:8443', '[2001:db8::1]:443'] },
      { workspace: null },
    ),
  ],
];

describe('Kubernetes manifests', { timeout: 30_000 }, () => {
  for (const [name, p] of VARIANTS) {
    test(`every object validates against the Kubernetes 1.33 schemas: ${name}`, () => {
      const objects: object[] = [
        ...runManifests(p, { proxyConfigJson: '{}', sandboxEnv: { A: 'b' } }, '10.0.0.5'),
        ...runnerRbac('ci', 'runner'),
      ];
      assert.equal(objects.length, 9);
      for (const object of objects) validate(object);
    });
  }

  test('the validator is not vacuous: a wrong enum, a wrong type and a missing required field are refused', () => {
    const pod = sandboxPod(plan(), '10.0.0.5');
    assert.throws(() => validate({ ...pod, spec: { ...pod.spec, restartPolicy: 'Sometimes' } }), /restartPolicy/);
    const policy = networkPolicies(plan())[0]!;
    const badPort = structuredClone(policy) as { spec: { egress: Array<{ ports: Array<{ protocol: string }> }> } };
    badPort.spec.egress[0]!.ports[0]!.protocol = 'ICMP';
    assert.throws(() => validate(badPort), /protocol/);
    const noContainers = structuredClone(pod) as unknown as { spec: Record<string, unknown> };
    delete noContainers.spec.containers;
    assert.throws(() => validate(noContainers), /containers/);
  });

  test('the sandbox pod: no token, no service links, no host namespaces, the proxy as its only resolver', () => {
    const pod = sandboxPod(plan(), '10.0.0.5');
    const spec = pod.spec!;
    assert.equal(spec.automountServiceAccountToken, false);
    assert.equal(spec.enableServiceLinks, false);
    assert.equal(spec.hostNetwork, false);
    assert.equal(spec.hostPID, false);
    assert.equal(spec.hostIPC, false);
    assert.equal(spec.restartPolicy, 'Never');
    assert.equal(spec.dnsPolicy, 'None');
    assert.deepEqual(spec.dnsConfig?.nameservers, ['10.0.0.5']);
    assert.equal(spec.securityContext?.seccompProfile?.type, 'Localhost');
    assert.equal(spec.securityContext?.seccompProfile?.localhostProfile, 'airlock/seccomp-profile.json');
    const [command] = spec.containers;
    const sc = command!.securityContext!;
    assert.equal(sc.allowPrivilegeEscalation, false);
    assert.equal(sc.privileged, false);
    assert.deepEqual(sc.capabilities, { drop: ['ALL'], add: ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'SETGID', 'SETUID'] });
    // The environment comes only from its Secret: no value in the pod spec.
    assert.equal(command!.env, undefined);
    assert.deepEqual(command!.envFrom, [{ secretRef: { name: 'airlock-sandbox-env-0123456789ab', optional: false } }]);
    // No volume of the proxy's configuration; the CA certificate over every system bundle, read-only.
    assert.ok(!JSON.stringify(spec.volumes).includes('airlock-proxy-config'));
    const caMounts = command!.volumeMounts!.filter((m) => m.name === 'airlock-ca');
    assert.ok(caMounts.every((m) => m.readOnly === true));
    assert.ok(caMounts.some((m) => m.mountPath === '/etc/ssl/certs/ca-certificates.crt' && m.subPath === 'ca.pem'));
    assert.deepEqual(
      command!.volumeMounts!.find((m) => m.name === 'workspace'),
      {
        name: 'workspace',
        mountPath: '/workspace',
        subPath: 'app/app',
      },
    );
  });

  test("the probe runs first, as airlock's image, unprivileged, against the canary and the API server", () => {
    const spec = sandboxPod(plan(), '10.0.0.5').spec!;
    const [probe] = spec.initContainers!;
    assert.equal(probe!.image, 'registry.test/airlock-proxy:1');
    assert.equal(probe!.securityContext?.runAsNonRoot, true);
    assert.deepEqual(probe!.securityContext?.capabilities, { drop: ['ALL'] });
    assert.deepEqual(probe!.args, [
      'netpolicy-probe',
      '--allowed',
      '10.0.0.5:443',
      '--forbidden',
      `10.0.0.5:${CANARY_PORT}`,
      '--forbidden',
      '10.96.0.1:443',
      '--deadline-ms',
      '20000',
    ]);
  });

  test('the proxy pod: non-root, no capabilities, read-only root, the only pod with the configuration Secret', () => {
    const pod = proxyPod(plan());
    const spec = pod.spec!;
    assert.equal(spec.securityContext?.runAsNonRoot, true);
    assert.equal(spec.securityContext?.runAsUser, 65532);
    assert.deepEqual(spec.securityContext?.sysctls, [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }]);
    const sc = spec.containers[0]!.securityContext!;
    assert.deepEqual(sc.capabilities, { drop: ['ALL'] });
    assert.equal(sc.readOnlyRootFilesystem, true);
    assert.equal(sc.allowPrivilegeEscalation, false);
    assert.deepEqual(spec.volumes, [
      {
        name: 'proxy-config',
        secret: { secretName: 'airlock-proxy-config-0123456789ab', defaultMode: 0o440, optional: false },
      },
    ]);
    assert.deepEqual(spec.containers[0]!.env?.find((e) => e.name === 'AIRLOCK_PROXY_POD_IP')?.valueFrom, {
      fieldRef: { fieldPath: 'status.podIP' },
    });
  });

  test('NetworkPolicies: the sandbox reaches only the proxy on DNS/HTTP/HTTPS, never the canary; nothing reaches it', () => {
    const [sandbox, proxy] = networkPolicies(plan());
    assert.deepEqual(sandbox!.spec!.podSelector.matchLabels, {
      'io.airlock.run': '0123456789ab',
      'io.airlock.role': 'sandbox',
    });
    assert.deepEqual(sandbox!.spec!.policyTypes, ['Ingress', 'Egress']);
    assert.deepEqual(sandbox!.spec!.ingress, []);
    assert.equal(sandbox!.spec!.egress!.length, 1);
    const [egress] = sandbox!.spec!.egress!;
    assert.deepEqual(egress!.to, [
      { podSelector: { matchLabels: { 'io.airlock.run': '0123456789ab', 'io.airlock.role': 'proxy' } } },
    ]);
    assert.deepEqual(
      egress!.ports!.map((p) => `${p.protocol}/${p.port}`),
      ['UDP/53', 'TCP/53', 'TCP/80', 'TCP/443'],
    );
    // The proxy admits the canary from the sandbox: only the sandbox's own egress policy may block it.
    const ingress = proxy!.spec!.ingress!;
    assert.equal(ingress.length, 1);
    assert.ok(ingress[0]!.ports!.some((p) => p.port === CANARY_PORT));
    const publicOnly = proxy!.spec!.egress!.find((r) => r.to?.some((t) => t.ipBlock?.cidr === '0.0.0.0/0'));
    assert.ok(publicOnly!.to![0]!.ipBlock!.except!.includes('169.254.0.0/16'));
    assert.ok(publicOnly!.to![0]!.ipBlock!.except!.includes('10.0.0.0/8'));
  });

  test('ports the allowlist names: the proxy exposes them and the sandbox may reach them there, nowhere else', () => {
    const p = plan({ declaredPorts: [5000, 8443] });
    const [sandbox, proxy] = networkPolicies(p);
    assert.deepEqual(
      sandbox!.spec!.egress![0]!.ports!.map((x) => `${x.protocol}/${x.port}`),
      ['UDP/53', 'TCP/53', 'TCP/80', 'TCP/443', 'TCP/5000', 'TCP/8443'],
    );
    assert.deepEqual(sandbox!.spec!.egress![0]!.to, [
      { podSelector: { matchLabels: { 'io.airlock.run': '0123456789ab', 'io.airlock.role': 'proxy' } } },
    ]);
    assert.ok([5000, 8443].every((port) => proxy!.spec!.ingress![0]!.ports!.some((x) => x.port === port)));
    const ports = proxyPod(p).spec!.containers[0]!.ports!.map((x) => `${x.name}/${x.containerPort}`);
    assert.deepEqual(ports.slice(-2), ['port-5000/5000', 'port-8443/8443']);
    for (const object of runManifests(p, { proxyConfigJson: '{}', sandboxEnv: {} }, '10.0.0.5')) validate(object);
  });

  test('the proxy pod listens on the ports the allowlist names; the canary’s port cannot be one of them', () => {
    const config = (domains: string[]) =>
      proxyPodConfig(
        {
          sandbox: SandboxConfigSchema.parse({}),
          allowlist: AllowlistSchema.parse({ domains }),
          allowlistSha256: '0'.repeat(64),
        } as LoadedPolicy,
        { proxyCredentials: { masked: [], signing: [] } } as unknown as PreparedCredentials,
        { certPem: 'c', keyPem: 'k' },
        'r',
        undefined,
        [],
      );
    assert.deepEqual(config(['a.test', 'b.test:5000', 'c.test:8443']).listen.ports, [5000, 8443]);
    assert.throws(() => config([`a.test:${CANARY_PORT}`]), /canary/);
  });

  test('owner references only when the runner pod is known; the run label on every object', () => {
    const owned = runManifests(
      plan({ owner: { name: 'runner-abc', uid: 'u-1' } }),
      { proxyConfigJson: '{}', sandboxEnv: {} },
      null,
    );
    const free = runManifests(plan(), { proxyConfigJson: '{}', sandboxEnv: {} }, null);
    for (const o of owned) {
      assert.deepEqual(o.metadata?.ownerReferences, [
        { apiVersion: 'v1', kind: 'Pod', name: 'runner-abc', uid: 'u-1' },
      ]);
      assert.equal(o.metadata?.labels?.['io.airlock.run'], '0123456789ab');
    }
    for (const o of free) assert.equal(o.metadata?.ownerReferences, undefined);
    // Without the proxy's address the sandbox pod says where it goes.
    const sandbox = free.find(
      (o): o is RunObject & IPod => o.kind === 'Pod' && o.metadata!.name!.startsWith('airlock-sandbox'),
    );
    assert.deepEqual(sandbox!.spec!.dnsConfig?.nameservers, ['PROXY_POD_IP']);
  });

  test('resource_limits.disk: read-only root and memory-backed, sized scratch directories', () => {
    const spec = sandboxPod(plan({}, { limits: { disk: '64m', memory: '1g' } }), '10.0.0.5').spec!;
    assert.equal(spec.containers[0]!.securityContext?.readOnlyRootFilesystem, true);
    const scratch = spec.volumes!.filter((v) => v.name.startsWith('scratch-'));
    assert.deepEqual(scratch.map((v) => v.name).sort(), [
      'scratch-home',
      'scratch-root',
      'scratch-run',
      'scratch-tmp',
      'scratch-var-tmp',
    ]);
    assert.ok(
      scratch.every((v) => v.emptyDir?.medium === 'Memory' && v.emptyDir.sizeLimit === String(64 * 1024 * 1024)),
    );
    assert.equal(spec.containers[0]!.resources?.limits?.memory, String(1024 ** 3));
  });

  test("the workspace is the runner pod's claim that holds the checkout", () => {
    const runner: IPod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'runner-abc' },
      spec: {
        containers: [
          {
            name: 'runner',
            volumeMounts: [
              { name: 'work', mountPath: '/home/runner/_work' },
              { name: 'tmp', mountPath: '/tmp' },
            ],
          },
        ],
        volumes: [
          { name: 'work', ephemeral: { volumeClaimTemplate: { spec: {} } } },
          { name: 'tmp', emptyDir: {} },
        ],
      },
    };
    assert.deepEqual(workspaceFromRunnerPod(runner, '/home/runner/_work/app/app'), {
      claimName: 'runner-abc-work',
      subPath: 'app/app',
    });
    assert.equal(workspaceFromRunnerPod(runner, '/tmp/x'), null, 'an emptyDir cannot be handed over');
    assert.equal(workspaceFromRunnerPod(runner, '/srv'), null);
  });
});

describe('airlock kube manifests', { timeout: 30_000 }, () => {
  let repo: string;
  const REAL = 'ghp_REALrealREALrealREALrealREALreal0000';
  before(async () => {
    repo = await mkdtemp(join(tmpdir(), 'airlock-kube-manifests-'));
    await mkdir(join(repo, '.airlock'));
    await writeFile(
      join(repo, '.airlock', 'sandbox.yaml'),
      'pass_env: [BUILD_TOKEN]\nmasked_secrets:\n  GH_TOKEN:\n    value: !env REAL_GH_TOKEN\n    scopes: [api.github.com]\n    headers: [Authorization]\n',
    );
    await writeFile(join(repo, '.airlock', 'network-allowlist.yaml'), 'domains: [api.github.com]\n');
  });
  after(() => rm(repo, { recursive: true, force: true }));

  async function manifests(extra: string[]) {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (c: Buffer) => (out += c.toString()));
    stderr.on('data', (c: Buffer) => (err += c.toString()));
    const code = await main(
      [
        'kube',
        'manifests',
        '--image',
        'registry.test/app:1',
        '--proxy-image',
        'registry.test/proxy:1',
        ...extra,
        '--',
        'npm',
        'test',
      ],
      { cwd: repo, env: { REAL_GH_TOKEN: REAL, BUILD_TOKEN: 'build-secret-123' }, stdout, stderr, isTTY: false },
    );
    return { code, out, err };
  }

  test('prints seven valid documents with placeholders for every secret value', async () => {
    const { code, out } = await manifests(['--namespace', 'ci', '--workspace-claim', 'work:app']);
    assert.equal(code, 0);
    const docs = parseAllDocuments(out).map((d) => d.toJS() as { kind: string });
    assert.deepEqual(
      docs.map((d) => d.kind),
      ['Secret', 'Secret', 'ConfigMap', 'NetworkPolicy', 'NetworkPolicy', 'Pod', 'Pod'],
    );
    for (const doc of docs) validate(doc);
    assert.ok(!out.includes(REAL), 'no real credential');
    assert.ok(!out.includes('build-secret-123'), 'no pass_env value');
    assert.ok(!out.includes('PRIVATE KEY'), 'no CA key');
    assert.match(out, /<redacted: masked_secrets\.GH_TOKEN\.value/);
    assert.match(out, /<value of \$BUILD_TOKEN on the runner>/);
  });

  test('--with-secrets prints the real values (and says so on stderr)', async () => {
    const { code, out, err } = await manifests(['--with-secrets', '--proxy-ip', '10.0.0.5']);
    assert.equal(code, 0);
    assert.ok(out.includes(REAL));
    assert.ok(out.includes('build-secret-123'));
    assert.ok(out.includes('PRIVATE KEY'));
    assert.match(err, /--with-secrets printed the CA key/);
  });

  test('without a registry image the error says how to get one', async () => {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let err = '';
    stderr.on('data', (c: Buffer) => (err += c.toString()));
    const code = await main(['kube', 'manifests', '--', 'true'], {
      cwd: repo,
      env: { REAL_GH_TOKEN: REAL },
      stdout,
      stderr,
      isTTY: false,
    });
    assert.equal(code, 2);
    assert.match(err, /--proxy-image REF|--image REF/);
  });
});
