import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { kubernetesChosen, rawEngineFlag } from '../../src/cli/commands/kube.js';
import { inClusterConnection, kubeconfigConnection } from '../../src/cli/kube/api.js';

/**
 * How airlock finds out it is on Kubernetes and how it reaches the API: the in-cluster service account (token
 * re-read on every request), a kubeconfig's token, client certificate or exec credential plugin.
 */

let dir: string;
let sa: string;
let bin: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'airlock-kube-conn-'));
  sa = join(dir, 'serviceaccount');
  await mkdir(sa);
  await writeFile(join(sa, 'token'), 'token-1\n');
  await writeFile(join(sa, 'ca.crt'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  await writeFile(join(sa, 'namespace'), 'ci\n');
  bin = join(dir, 'bin');
  await mkdir(bin);
});
after(() => rm(dir, { recursive: true, force: true }));

describe('choosing Kubernetes', { timeout: 10_000 }, () => {
  const inPod = { KUBERNETES_SERVICE_HOST: '10.96.0.1' };

  test('asked for, it is chosen; another engine named, it is not', async () => {
    assert.equal(await kubernetesChosen('kubernetes', {}, sa), true);
    assert.equal(await kubernetesChosen('podman', inPod, sa), false);
  });

  test('unasked: only inside a pod with a service account and no podman or docker on PATH', async () => {
    assert.equal(await kubernetesChosen(undefined, { ...inPod, PATH: bin }, sa), true);
    assert.equal(await kubernetesChosen(undefined, { PATH: bin }, sa), false, 'not in a pod');
    assert.equal(await kubernetesChosen(undefined, { ...inPod, PATH: bin }, join(dir, 'none')), false, 'no token');
    await writeFile(join(bin, 'podman'), '#!/bin/sh\n');
    await chmod(join(bin, 'podman'), 0o755);
    try {
      assert.equal(await kubernetesChosen(undefined, { ...inPod, PATH: bin }, sa), false, 'an engine is there');
    } finally {
      await rm(join(bin, 'podman'));
    }
  });

  test('the engine flag is read as given, before the command, in both spellings', () => {
    assert.equal(rawEngineFlag(['--engine', 'kubernetes', '--', 'x']), 'kubernetes');
    assert.equal(rawEngineFlag(['--container-command=kubernetes', '--', 'x']), 'kubernetes');
    assert.equal(rawEngineFlag(['--', '--engine', 'kubernetes']), undefined);
  });
});

describe('reaching the API', { timeout: 10_000 }, () => {
  test('in a pod: the service host, its CA, the namespace, and a token read again on each request', async () => {
    const c = inClusterConnection({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '6443' }, sa)!;
    assert.equal(c.server, 'https://10.96.0.1:6443');
    assert.equal(c.namespace, 'ci');
    assert.match(c.ca!, /BEGIN CERTIFICATE/);
    assert.equal(c.token!(), 'token-1');
    await writeFile(join(sa, 'token'), 'token-2\n');
    assert.equal(c.token!(), 'token-2', 'a rotated projected token is picked up');
    assert.equal(inClusterConnection({}, sa), null);
  });

  test('a kubeconfig: the current context, its namespace, CA data, and a token', async () => {
    const file = join(dir, 'config-token');
    await writeFile(
      file,
      [
        'current-context: b',
        'contexts: [{name: a, context: {cluster: x, user: u}}, {name: b, context: {cluster: y, user: v, namespace: ns}}]',
        'clusters: [{name: x, cluster: {server: "https://x"}}, {name: y, cluster: {server: "https://y:6443/", certificate-authority-data: ' +
          Buffer.from('PEM').toString('base64') +
          '}}]',
        'users: [{name: u, user: {token: wrong}}, {name: v, user: {token: right}}]',
      ].join('\n'),
    );
    const c = kubeconfigConnection({ KUBECONFIG: file })!;
    assert.equal(c.server, 'https://y:6443');
    assert.equal(c.ca, 'PEM');
    assert.equal(c.namespace, 'ns');
    assert.equal(c.token!(), 'right');
  });

  test('a kubeconfig with an exec credential plugin (EKS, GKE): its token, cached until it expires', async () => {
    const plugin = join(dir, 'plugin.sh');
    const count = join(dir, 'plugin-calls');
    await writeFile(
      plugin,
      `#!/bin/sh\necho x >> ${count}\nprintf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"exec-%s","expirationTimestamp":"2999-01-01T00:00:00Z"}}' "$CLUSTER"\n`,
    );
    await chmod(plugin, 0o755);
    const file = join(dir, 'config-exec');
    await writeFile(
      file,
      [
        'current-context: c',
        'contexts: [{name: c, context: {cluster: k, user: e}}]',
        'clusters: [{name: k, cluster: {server: "https://k"}}]',
        `users: [{name: e, user: {exec: {command: ${plugin}, env: [{name: CLUSTER, value: prod}]}}}]`,
      ].join('\n'),
    );
    const c = kubeconfigConnection({ KUBECONFIG: file, PATH: process.env.PATH })!;
    assert.equal(c.token!(), 'exec-prod');
    assert.equal(c.token!(), 'exec-prod');
    const { readFile } = await import('node:fs/promises');
    assert.equal((await readFile(count, 'utf8')).trim().split('\n').length, 1, 'asked once while the token is valid');
  });

  test('no kubeconfig at all: none', () => {
    assert.equal(kubeconfigConnection({ KUBECONFIG: join(dir, 'missing') }), null);
  });
});
