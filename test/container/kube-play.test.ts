import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { parseAllDocuments, stringify } from 'yaml';
import { resolveEngine } from '../../src/cli/engine/engine.js';
import { main } from '../../src/cli/main.js';
import { allowWithinBridge } from '../../src/cli/session/bridge-forwarding.js';
import { ensureProxyImage } from '../../src/cli/session/proxy-image.js';
import { ensureTestImage, TEST_IMAGE } from '../helpers/images.js';
import { unenforcedLimits } from '../helpers/world.js';

/**
 * No cluster runs here, so the pods `airlock kube manifests` generates run for real under `podman kube play`: the
 * proxy pod dual-homed (an internal network and an egress network), the sandbox pod only on the internal one. This
 * proves the same pod specs start, the proxy pod serves from its mounted Secret, the probe refuses a network that
 * does not enforce the NetworkPolicy, and — with the sandbox's NetworkPolicy enforced by rules programmed from the
 * generated object — the command runs, the proxy allows and blocks, and the exit code comes back.
 *
 * What Podman 4.3's kube play cannot take is adapted here, and only that: Secrets become `podman secret`s (its kube
 * play reads only a Secret's `data`, undecoded), the downward-API pod IP becomes the address the test assigns,
 * subPath mounts are dropped (ignored by kube play: it would mount a directory over the file), containerPorts are
 * dropped (kube play publishes them on the host), the namespaced sysctl comes from containers.conf, and NetworkPolicy objects are translated into iptables rules.
 */

const RUN = `t${process.pid}`;
const INTERNAL = `airlock-kube-int-${RUN}`;
const EGRESS = `airlock-kube-egr-${RUN}`;
const VOLUME = `airlock-kube-ws-${RUN}`;
const BRIDGE_NETFILTER = '/proc/sys/net/bridge/bridge-nf-call-iptables';

let work: string;
let repo: string;
let wsDir: string;
let conf: string;
let proxyImage: string;
let upstream: http.Server;
let upstreamHits: string[] = [];
let subnetBase: string;
let gateway: string;
const undo: Array<() => Promise<unknown>> = [];

async function must(argv: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
  if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}: ${r.stderr.slice(-2000)}`);
  return r.stdout;
}

const podman = (args: string[]) => must(['podman', ...args], { CONTAINERS_CONF: conf });

// The pods carry memory limits (the proxy's, the canary's). Where the engine cannot apply them (rootless Podman on
// cgroup v1) kube play does not drop them as `podman run` does: runc refuses to start the pod ("cannot set memory
// limit"). The manifests are for a Kubernetes node, which applies them; this stand-in for one needs a world that can.
const cannotPlay = (await unenforcedLimits('podman')).has('memory')
  ? "this world cannot apply the pods' memory limits (rootless Podman on cgroup v1): runc refuses such pods"
  : false;

before(async () => {
  if (cannotPlay) return;
  work = await mkdtemp(join(tmpdir(), 'airlock-kube-play-'));
  conf = join(work, 'containers.conf');
  // Within this machine's hard limits, runc (crun fails on this cgroup v1 host), and the proxy pod's
  // ip_unprivileged_port_start sysctl, which Podman 4.3's kube play does not read from a pod spec.
  await writeFile(
    conf,
    '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n' +
      'default_sysctls = ["net.ipv4.ip_unprivileged_port_start=0"]\n[engine]\nruntime = "runc"\n',
  );
  const engine = await resolveEngine('podman', process.env);
  [proxyImage] = await Promise.all([ensureProxyImage(engine), ensureTestImage('podman')]);

  await podman(['network', 'create', '--internal', '--disable-dns', INTERNAL]);
  undo.push(() => podman(['network', 'rm', '-f', INTERNAL]));
  await podman(['network', 'create', EGRESS]);
  undo.push(() => podman(['network', 'rm', '-f', EGRESS]));
  const subnet = JSON.parse(await podman(['network', 'inspect', INTERNAL]))[0].subnets[0].subnet as string;
  subnetBase = subnet.replace(/\.0\/24$/, '');
  gateway = JSON.parse(await podman(['network', 'inspect', EGRESS]))[0].subnets[0].gateway as string;
  // The same rule airlock adds for its own runs on a host whose FORWARD chain drops (Docker's).
  const bridgeUndo = await allowWithinBridge(engine, INTERNAL, async (n) =>
    (await podman(['network', 'inspect', '--format', '{{.NetworkInterface}}', n])).trim(),
  );
  if (bridgeUndo) undo.push(bridgeUndo);

  // The upstream on the egress side: the project's own network, never the outside world.
  upstream = http.createServer((req, res) => {
    upstreamHits.push(`${req.method} ${req.headers.host} ${req.url}`);
    res.end('upstream says hi\n');
  });
  // The egress bridge gets its gateway address only once a container attaches, so listen on every address; only
  // the test's own containers send anything here.
  await new Promise<void>((r) => upstream.listen(0, '0.0.0.0', r));
  undo.push(() => new Promise((r) => upstream.close(r)));

  wsDir = join(work, 'workspace');
  await mkdir(wsDir);
  await podman(['volume', 'create', '--opt', 'type=none', '--opt', 'o=bind', '--opt', `device=${wsDir}`, VOLUME]);
  undo.push(() => podman(['volume', 'rm', '-f', VOLUME]));

  repo = join(work, 'repo');
  await mkdir(join(repo, '.airlock'), { recursive: true });
  const port = (upstream.address() as AddressInfo).port;
  await writeFile(
    join(repo, '.airlock', 'sandbox.yaml'),
    `upstream_hosts:\n  allowed.test: "${gateway}:${port}"\nenv:\n  GREETING: hello\n`,
  );
  await writeFile(
    join(repo, '.airlock', 'network-allowlist.yaml'),
    'url_prefixes:\n  - host: allowed.test\n    path: /ok\n',
  );
});

after(async () => {
  // Keep everything for a post-mortem (then remove it by hand: pods, secrets, volumes, networks, iptables rules).
  if (process.env.AIRLOCK_TEST_KEEP || cannotPlay) return;
  for (const step of undo.reverse()) await step().catch(() => undefined);
  await rm(work, { recursive: true, force: true });
});

const SCRIPT = [
  'echo marker > /workspace/from-sandbox',
  'echo "greeting=$GREETING"',
  'echo "allowed=$(curl -s -o /dev/null -w "%{http_code}" http://allowed.test/ok)"',
  'echo "blocked=$(curl -s -o /dev/null -w "%{http_code}" http://blocked.test/)"',
  'echo "https-blocked=$(curl -s -o /dev/null -w "%{http_code}" https://blocked.test/)"',
  'exit 7',
].join('; ');

interface Generated {
  docs: Array<Record<string, any>>; // eslint-disable-line @typescript-eslint/no-explicit-any
  proxyIp: string;
  sandboxIp: string;
}

async function generate(octet: number): Promise<Generated> {
  const proxyIp = `${subnetBase}.${octet}`;
  const sandboxIp = `${subnetBase}.${octet + 1}`;
  const stdout = new PassThrough();
  let out = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  const code = await main(
    [
      'kube',
      'manifests',
      '--with-secrets',
      '--proxy-ip',
      proxyIp,
      '--image',
      TEST_IMAGE,
      '--proxy-image',
      proxyImage,
      '--workspace-claim',
      VOLUME,
      '--',
      // Absolute: the test image sets no PATH, and a pod's runtime adds none (unlike podman run).
      '/bin/sh',
      '-c',
      SCRIPT,
    ],
    { cwd: repo, env: {}, stdout, stderr: new PassThrough(), isTTY: false },
  );
  assert.equal(code, 0);
  return { docs: parseAllDocuments(out).map((d) => d.toJS() as Generated['docs'][number]), proxyIp, sandboxIp };
}

/** The adaptations Podman 4.3 needs, and nothing else (see the header). */
async function play(g: Generated, enforce: boolean): Promise<{ proxy: string; sandbox: string; played: string }> {
  const byKind = (kind: string) => g.docs.filter((d) => d.kind === kind);
  const [proxyPod, sandboxPod] = byKind('Pod');
  const envSecrets = new Set(
    sandboxPod!.spec.containers.flatMap((c: { envFrom?: Array<{ secretRef?: { name: string } }> }) =>
      (c.envFrom ?? []).map((e) => e.secretRef?.name),
    ),
  );
  for (const secret of byKind('Secret')) {
    const file = join(work, `${secret.metadata.name}.yaml`);
    // For envFrom Podman 4.3 wants a JSON map of base64 values; for a volume, a Secret YAML whose `data` it takes
    // as is (it does not decode it).
    await writeFile(
      file,
      envSecrets.has(secret.metadata.name)
        ? JSON.stringify(
            Object.fromEntries(
              Object.entries(secret.stringData as Record<string, string>).map(([k, v]) => [
                k,
                Buffer.from(v).toString('base64'),
              ]),
            ),
          )
        : stringify({ apiVersion: 'v1', kind: 'Secret', metadata: secret.metadata, data: secret.stringData }),
    );
    await podman(['secret', 'create', secret.metadata.name, file]);
    undo.push(() => podman(['secret', 'rm', secret.metadata.name]));
    undo.push(() => podman(['volume', 'rm', '-f', secret.metadata.name]));
  }
  for (const cm of byKind('ConfigMap')) undo.push(() => podman(['volume', 'rm', '-f', cm.metadata.name]));
  for (const container of proxyPod!.spec.containers) {
    // Podman 4.3 publishes a containerPort on the host (Kubernetes only documents it): 53, 80 and 443 there.
    delete container.ports;
    for (const env of container.env ?? []) {
      if (env.valueFrom?.fieldRef?.fieldPath === 'status.podIP') {
        delete env.valueFrom;
        env.value = g.proxyIp;
      }
    }
  }
  for (const container of sandboxPod!.spec.containers) {
    container.volumeMounts = container.volumeMounts.filter((m: { subPath?: string }) => !m.subPath);
  }
  const proxyFile = join(work, `proxy-${g.proxyIp}.yaml`);
  await writeFile(proxyFile, stringify(proxyPod));
  const sandboxFile = join(work, `sandbox-${g.proxyIp}.yaml`);
  await writeFile(sandboxFile, [...byKind('ConfigMap'), sandboxPod].map((d) => `---\n${stringify(d)}`).join(''));

  const proxyName = proxyPod!.metadata.name as string;
  const sandboxName = sandboxPod!.metadata.name as string;
  undo.push(() => podman(['pod', 'rm', '-f', proxyName]));
  undo.push(() => podman(['pod', 'rm', '-f', sandboxName]));
  await podman(['kube', 'play', '--network', `${INTERNAL}:ip=${g.proxyIp}`, '--network', EGRESS, proxyFile]);
  for (let i = 0; i < 100; i++) {
    if ((await podman(['logs', `${proxyName}-proxy`])).includes('AIRLOCK-PROXY-READY')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(await podman(['logs', `${proxyName}-proxy`]), /AIRLOCK-PROXY-READY/, 'the proxy pod is ready');

  if (enforce) await enforceSandboxPolicy(g, byKind('NetworkPolicy') as INetworkPolicy[]);
  const played = await new Promise<string>((resolve) => {
    const child = spawn('podman', ['kube', 'play', '--network', `${INTERNAL}:ip=${g.sandboxIp}`, sandboxFile], {
      env: { ...process.env, CONTAINERS_CONF: conf },
    });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    child.on('close', () => resolve(text));
  });
  return { proxy: proxyName, sandbox: sandboxName, played };
}

/**
 * What a CNI does with the generated sandbox NetworkPolicy, programmed from the object itself: traffic from the
 * sandbox to the proxy on the policy's ports passes, everything else from the sandbox is dropped.
 */
async function enforceSandboxPolicy(g: Generated, policies: INetworkPolicy[]): Promise<void> {
  const sandboxPolicy = policies.find((p) => p.spec?.podSelector.matchLabels?.['io.airlock.role'] === 'sandbox')!;
  const rules: string[][] = [['-s', g.sandboxIp, '-j', 'DROP', '-m', 'comment', '--comment', `airlock-test-${RUN}`]];
  for (const egress of sandboxPolicy.spec!.egress ?? []) {
    assert.equal(egress.to?.[0]?.podSelector?.matchLabels?.['io.airlock.role'], 'proxy');
    for (const port of egress.ports ?? []) {
      rules.push([
        '-s',
        g.sandboxIp,
        '-d',
        g.proxyIp,
        '-p',
        (port.protocol ?? 'TCP').toLowerCase(),
        '--dport',
        String(port.port),
        '-j',
        'ACCEPT',
        '-m',
        'comment',
        '--comment',
        `airlock-test-${RUN}`,
      ]);
    }
  }
  // Inserted at the top in reverse, so the ACCEPTs come before the DROP and all of them before any other rule.
  for (const rule of rules) {
    await must(['iptables', '-w', '5', '-I', 'FORWARD', '1', ...rule]);
    undo.push(() => must(['iptables', '-w', '5', '-D', 'FORWARD', ...rule]));
  }
}

async function containerState(name: string): Promise<{ exitCode: number; startedAt: string }> {
  const out = await podman(['inspect', '--format', '{{.State.ExitCode}} {{.State.StartedAt}}', name]);
  const [exitCode, ...rest] = out.trim().split(' ');
  return { exitCode: Number(exitCode), startedAt: rest.join(' ') };
}

describe('the generated pods under podman kube play', { timeout: 300_000 }, () => {
  test(
    'without NetworkPolicy enforcement the probe refuses and the command never runs',
    { skip: cannotPlay },
    async () => {
      const g = await generate(10);
      const { proxy, sandbox, played } = await play(g, false);
      assert.match(played, /init container .* exited with code 10/);
      const main = await containerState(`${sandbox}-sandbox`);
      assert.match(main.startedAt, /^0001-01-01/, 'the command container never started');
      await assert.rejects(readFile(join(wsDir, 'from-sandbox')), 'nothing was written to the workspace');
      // The receiving side saw it too: the probe's connection reached the canary.
      assert.match(
        await podman(['logs', `${proxy}-proxy`]),
        new RegExp(`AIRLOCK-CANARY \\{"from":"${g.sandboxIp.replace(/\./g, '\\.')}"\\}`),
      );
    },
  );

  const filtered = (() => {
    try {
      return readFileSync(BRIDGE_NETFILTER, 'utf8').trim() === '1';
    } catch {
      return false;
    }
  })();
  test(
    'with the sandbox NetworkPolicy enforced the command runs: allowed passes, blocked gets 403, exit 7 comes back',
    {
      skip:
        cannotPlay ||
        (filtered ? false : 'bridged traffic bypasses iptables here (br_netfilter not loaded): no policy to enforce'),
    },
    async () => {
      upstreamHits = [];
      const g = await generate(20);
      const { proxy, sandbox, played } = await play(g, true);
      assert.doesNotMatch(played, /init container .* exited|Error:/, played);
      let state = await containerState(`${sandbox}-sandbox`);
      for (let i = 0; i < 300 && state.startedAt.startsWith('0001'); i++) {
        await new Promise((r) => setTimeout(r, 100));
        state = await containerState(`${sandbox}-sandbox`);
      }
      await must(['podman', 'wait', `${sandbox}-sandbox`], { CONTAINERS_CONF: conf });
      state = await containerState(`${sandbox}-sandbox`);
      const output = await podman(['logs', `${sandbox}-sandbox`]);
      assert.equal(state.exitCode, 7, output);
      assert.match(output, /greeting=hello/);
      assert.match(output, /allowed=200/);
      assert.match(output, /blocked=403/);
      assert.match(output, /https-blocked=403/, 'TLS through the per-run CA from the ConfigMap, then a 403');
      assert.deepEqual(upstreamHits, ['GET allowed.test /ok']);
      assert.equal(await readFile(join(wsDir, 'from-sandbox'), 'utf8'), 'marker\n');
      const proxyLog = await podman(['logs', `${proxy}-proxy`]);
      assert.match(proxyLog, /AIRLOCK-EVENT .*"decision":"blocked"/);
      assert.doesNotMatch(proxyLog, /AIRLOCK-CANARY/, 'nothing reached the canary');
    },
  );
});
