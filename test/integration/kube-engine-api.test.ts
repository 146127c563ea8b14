import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { IPod, ISecret } from 'kubernetes-models/v1';
import { main } from '../../src/cli/main.js';
import { startFakeKubeApi, type FakeKubeApi, type PodScript, type RecordedCall } from '../helpers/fake-kube-api.js';

/**
 * `airlock run --engine kubernetes` against a fake API server on loopback: the client's real HTTP calls (paths,
 * bodies, order, the bearer token), the objects' labels and owner references, the exit code mapping, and that every
 * object is deleted on every path — success, a refused NetworkPolicy probe, a proxy that cannot start, a signal.
 */

const RUNNER = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'runner-abc', namespace: 'ci', uid: 'uid-runner-abc' },
  spec: {
    nodeName: 'node-7',
    containers: [
      { name: 'runner', image: 'runner', volumeMounts: [{ name: 'work', mountPath: '/home/runner/_work' }] },
    ],
    volumes: [{ name: 'work', persistentVolumeClaim: { claimName: 'runner-abc-work' } }],
  },
};
const CWD = '/home/runner/_work/app/app';
const READY = 'AIRLOCK-PROXY-READY {"http":80,"https":443,"dns":53}\n';
const EVENT =
  'AIRLOCK-EVENT {"event":"request","decision":"blocked","host":"evil.test"}\tBLOCKED GET http://evil.test/\n';

let work: string;
let configDir: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'airlock-kube-engine-'));
  configDir = join(work, '.airlock');
  await mkdir(configDir);
  await writeFile(
    join(configDir, 'sandbox.yaml'),
    'env:\n  GREETING: hello\nmasked_secrets:\n  GH_TOKEN:\n    value: !env REAL_GH_TOKEN\n    scopes: [api.github.com]\n    headers: [Authorization]\n',
  );
  await writeFile(join(configDir, 'network-allowlist.yaml'), 'domains:\n  - api.github.com\n');
  await writeFile(
    join(work, 'kubeconfig'),
    '', // filled per server below
  );
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

interface Scenario {
  proxy?: Partial<PodScript>;
  sandbox?: Partial<PodScript>;
  extraArgs?: string[];
  during?: (api: FakeKubeApi) => void;
  forbidden?: RegExp;
}

const REAL = 'ghp_REALrealREALrealREALrealREALreal0000';

async function runScenario(s: Scenario) {
  const api = await startFakeKubeApi(
    (pod) => {
      if (pod.metadata.name.startsWith('airlock-proxy-')) {
        return { podIP: '10.0.0.5', containers: { proxy: { log: [READY, EVENT] } }, ...s.proxy };
      }
      if (pod.metadata.name.startsWith('airlock-sandbox-')) {
        return {
          init: { 'netpolicy-probe': { exitCode: 0 } },
          containers: { sandbox: { log: ['hello from the sandbox\n'], exitCode: 3 } },
          ...s.sandbox,
        };
      }
      return null;
    },
    [RUNNER],
    s.forbidden,
  );
  const kubeconfig = join(work, `kubeconfig-${Math.random().toString(36).slice(2)}`);
  await writeFile(
    kubeconfig,
    [
      'apiVersion: v1',
      'kind: Config',
      'current-context: test',
      'contexts: [{name: test, context: {cluster: fake, user: ci, namespace: ci}}]',
      `clusters: [{name: fake, cluster: {server: "${api.url}"}}]`,
      'users: [{name: ci, user: {token: test-token}}]',
    ].join('\n'),
  );
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  const env = {
    PATH: '/nonexistent',
    KUBECONFIG: kubeconfig,
    KUBERNETES_SERVICE_HOST: '10.96.0.1',
    KUBERNETES_SERVICE_PORT: '443',
    HOSTNAME: 'runner-abc',
    REAL_GH_TOKEN: REAL,
  };
  const running = main(
    [
      'run',
      '--engine',
      'kubernetes',
      '--config-dir',
      configDir,
      '--image',
      'registry.test/app:1',
      '--proxy-image',
      'registry.test/airlock-proxy:1',
      '--verbose',
      ...(s.extraArgs ?? []),
      '--',
      'sh',
      '-c',
      'echo hi',
    ],
    { cwd: CWD, env, stdout, stderr, isTTY: false },
  );
  s.during?.(api);
  const code = await running;
  await api.close();
  return { code, out, err, api };
}

interface Meta {
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  ownerReferences?: unknown;
}
const meta = (c: RecordedCall): Meta => c.body?.metadata ?? {};
const isPod = (c: RecordedCall, prefix: string) =>
  c.method === 'POST' && c.body?.kind === 'Pod' && (meta(c).name ?? '').startsWith(prefix);

const creates = (calls: RecordedCall[]) =>
  calls.filter((c) => c.method === 'POST').map((c) => `${c.body?.kind as string} ${meta(c).name}`);
const deletes = (calls: RecordedCall[]) => calls.filter((c) => c.method === 'DELETE').map((c) => c.path);

function assertNothingLeft(api: FakeKubeApi) {
  const left = [...api.objects.keys()].filter((k) => k !== 'Pod/runner-abc');
  assert.deepEqual(left, [], 'every object of the run is deleted');
}

describe('airlock run --engine kubernetes against a fake API server', { timeout: 60_000 }, () => {
  test('creates, watches, streams and deletes in order; exit code, labels, owner and token are right', async () => {
    const { code, out, err, api } = await runScenario({});
    assert.equal(code, 3, err);
    assert.equal(out, 'hello from the sandbox\n');
    assert.match(err, /1 request was blocked/);
    const made = creates(api.calls);
    assert.deepEqual(
      made.map((m) => m.replace(/-[0-9a-f]{12}$/, '')),
      [
        'Secret airlock-proxy-config',
        'Secret airlock-sandbox-env',
        'ConfigMap airlock-ca',
        'NetworkPolicy airlock-sandbox',
        'NetworkPolicy airlock-proxy',
        'Pod airlock-proxy',
        'Pod airlock-sandbox',
      ],
    );
    // Every call carries the token; the runner pod was read first.
    assert.ok(api.calls.every((c) => c.authorization === 'Bearer test-token'));
    assert.equal(api.calls[0]!.path, '/api/v1/namespaces/ci/pods/runner-abc');
    // The proxy's configuration Secret is deleted as soon as the proxy is ready, before the sandbox pod exists.
    const order = api.calls.map((c) => `${c.method} ${c.path}`);
    const secretGone = order.findIndex((c) => /^DELETE .*\/secrets\/airlock-proxy-config-/.test(c));
    const sandboxMade = api.calls.findIndex((c) => isPod(c, 'airlock-sandbox-'));
    assert.ok(secretGone > 0 && secretGone < sandboxMade, 'config Secret deleted before the sandbox pod is created');
    // The sandbox's log is followed only after its pod is created; the proxy's before.
    assert.ok(order.some((c) => /pods\/airlock-sandbox-[0-9a-f]+\/log\?container=sandbox&follow=true/.test(c)));
    for (const call of api.calls.filter((c) => c.method === 'POST')) {
      const m = meta(call);
      assert.equal(m.namespace, 'ci');
      assert.equal(m.labels?.['app.kubernetes.io/managed-by'], 'airlock');
      assert.match(m.labels?.['io.airlock.run'] ?? '', /^[0-9a-f]{12}$/);
      assert.equal(m.labels?.['io.airlock.owner-pod'], 'runner-abc');
      assert.deepEqual(m.ownerReferences, [
        { apiVersion: 'v1', kind: 'Pod', name: 'runner-abc', uid: 'uid-runner-abc' },
      ]);
    }
    const sandbox = api.calls.find((c) => isPod(c, 'airlock-sandbox-'))!.body as unknown as IPod & {
      spec: NonNullable<IPod['spec']>;
    };
    assert.deepEqual(sandbox.spec.dnsConfig?.nameservers, ['10.0.0.5']);
    assert.equal(sandbox.spec.nodeName, 'node-7');
    assert.deepEqual(sandbox.spec.volumes?.find((v) => v.name === 'workspace')?.persistentVolumeClaim, {
      claimName: 'runner-abc-work',
    });
    assert.equal(sandbox.spec.containers[0]!.volumeMounts?.find((m) => m.name === 'workspace')?.subPath, 'app/app');
    // The probe must fail to reach the canary and the API server, and reach the proxy.
    assert.deepEqual(sandbox.spec.initContainers?.[0]?.args, [
      'netpolicy-probe',
      '--allowed',
      '10.0.0.5:443',
      '--forbidden',
      '10.0.0.5:9443',
      '--forbidden',
      '10.96.0.1:443',
      '--deadline-ms',
      '20000',
    ]);
    // No real secret value in anything but the proxy's Secret; the sandbox env has the surrogate.
    for (const call of api.calls.filter((c) => c.body)) {
      const text = JSON.stringify(call.body);
      const isProxyConfig = (meta(call).name ?? '').startsWith('airlock-proxy-config-');
      assert.equal(
        text.includes(REAL),
        isProxyConfig,
        `real value only in the proxy config Secret (${meta(call).name})`,
      );
    }
    const env = api.calls.find((c) => (meta(c).name ?? '').startsWith('airlock-sandbox-env-'))!
      .body as unknown as ISecret;
    assert.equal(env.stringData?.GREETING, 'hello');
    assert.match(env.stringData?.GH_TOKEN ?? '', /^ghp_/);
    assert.notEqual(env.stringData?.GH_TOKEN, REAL);
    // Pods are deleted before the objects they use; everything is gone.
    const gone = deletes(api.calls).map((p) => p.replace(/\/namespaces\/ci\//, ' ').replace(/-[0-9a-f]{12}$/, ''));
    assert.deepEqual(gone, [
      '/api/v1 secrets/airlock-proxy-config',
      '/api/v1 pods/airlock-sandbox',
      '/api/v1 pods/airlock-proxy',
      '/apis/networking.k8s.io/v1 networkpolicies/airlock-proxy',
      '/apis/networking.k8s.io/v1 networkpolicies/airlock-sandbox',
      '/api/v1 configmaps/airlock-ca',
      '/api/v1 secrets/airlock-sandbox-env',
    ]);
    assertNothingLeft(api);
  });

  test('a probe that finds the NetworkPolicy unenforced: 125, the command never runs, nothing left', async () => {
    const { code, out, err, api } = await runScenario({
      sandbox: {
        init: {
          'netpolicy-probe': {
            exitCode: 10,
            message: 'the NetworkPolicy is not enforced: this pod reached 10.0.0.5:9443, which its policy forbids',
          },
        },
        containers: { sandbox: { log: ['MUST NOT RUN\n'], exitCode: 0 } },
      },
    });
    assert.equal(code, 125);
    assert.equal(out, '');
    assert.match(err, /the command was not run: the NetworkPolicy is not enforced/);
    assert.ok(!api.calls.some((c) => /container=sandbox/.test(c.path)), 'the command log is never opened');
    assertNothingLeft(api);
  });

  test('a proxy image that cannot be pulled: 125 naming the reason, no sandbox pod, nothing left', async () => {
    const { code, err, api } = await runScenario({ proxy: { containers: { proxy: { waiting: 'ImagePullBackOff' } } } });
    assert.equal(code, 125);
    assert.match(err, /the proxy pod could not start: proxy: ImagePullBackOff/);
    assert.ok(!creates(api.calls).some((c) => c.startsWith('Pod airlock-sandbox')));
    assertNothingLeft(api);
  });

  test('a command past its --timeout: its pod is deleted at once, exit 124, nothing left', async () => {
    const { code, err, api } = await runScenario({
      sandbox: { containers: { sandbox: { log: ['working\n'] } } },
      extraArgs: ['--timeout', '10'],
    });
    assert.equal(code, 124);
    assert.match(err, /timed out after 10s/);
    const stop = api.calls.find((c) => c.method === 'DELETE' && /pods\/airlock-sandbox-/.test(c.path))!;
    assert.equal(stop.body?.gracePeriodSeconds, 0);
    const sandbox = api.calls.find((c) => isPod(c, 'airlock-sandbox-'))!.body as unknown as IPod;
    assert.equal(sandbox.spec?.activeDeadlineSeconds, 10 + 300, 'the pod ends by itself should airlock die');
    assertNothingLeft(api);
  });

  test('RBAC refusing a call: 125 naming the Role the runner needs; nothing created, nothing left', async () => {
    const { code, err, api } = await runScenario({ forbidden: /^GET .*\/pods\/runner-abc$/ });
    assert.equal(code, 125);
    assert.match(err, /403 forbidden by the test \(see docs\/kubernetes\.md#rbac/);
    assert.ok(!api.calls.some((c) => c.method === 'POST'));
    assertNothingLeft(api);
  });

  test('RBAC refusing NetworkPolicies: 125, and what was created before is deleted', async () => {
    const { code, err, api } = await runScenario({ forbidden: /^POST .*\/networkpolicies$/ });
    assert.equal(code, 125);
    assert.match(err, /networkpolicies: 403/);
    assert.ok(api.calls.some((c) => c.method === 'DELETE' && /secrets\/airlock-proxy-config-/.test(c.path)));
    assertNothingLeft(api);
  });

  test('an OOM-killed command: 137 with the memory hint', async () => {
    const { code, err, api } = await runScenario({
      sandbox: { containers: { sandbox: { exitCode: 137, reason: 'OOMKilled' } } },
    });
    assert.equal(code, 137);
    assert.match(err, /ran out of memory/);
    assertNothingLeft(api);
  });

  test('SIGINT while the command runs: its pod is deleted with a grace period, exit 130, nothing left', async () => {
    const { code, api } = await runScenario({
      sandbox: { containers: { sandbox: { log: ['working\n'] } } },
      during: (fake) => {
        const poll = setInterval(() => {
          if (fake.calls.some((c) => /container=sandbox/.test(c.path))) {
            clearInterval(poll);
            process.emit('SIGINT');
          }
        }, 20);
      },
    });
    assert.equal(code, 130);
    const stop = api.calls.find((c) => c.method === 'DELETE' && /pods\/airlock-sandbox-/.test(c.path))!;
    assert.equal(stop.body?.gracePeriodSeconds, 5);
    assertNothingLeft(api);
  });

  test('the canary reached while the command runs: the run is stopped with 125', async () => {
    const { code, err, api } = await runScenario({
      sandbox: { containers: { sandbox: { log: ['working\n'] } } },
      during: (fake) => {
        const poll = setInterval(() => {
          const proxy = [...fake.objects.keys()].find((k) => k.startsWith('Pod/airlock-proxy-'));
          if (proxy && fake.calls.some((c) => /container=sandbox/.test(c.path))) {
            clearInterval(poll);
            fake.appendLog(proxy.slice(4), 'proxy', 'AIRLOCK-CANARY {"from":"10.0.0.9"}\n');
          }
        }, 20);
      },
    });
    assert.equal(code, 125);
    assert.match(err, /10\.0\.0\.9 reached the proxy pod's canary port/);
    assertNothingLeft(api);
  });
});
