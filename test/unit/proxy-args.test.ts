import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { decodeProxyConfig, encodeProxyConfig } from '../../src/protocol/proxy-wire.js';
import { SandboxConfigSchema } from '../../src/protocol/sandbox-config.js';
import type { LoadedPolicy } from '../../src/cli/config/types.js';
import {
  CA_ENV_VARIABLES,
  generateRunCa,
  SANDBOX_CA_PATH,
  SYSTEM_CA_BUNDLES,
  writeSandboxTrust,
} from '../../src/cli/session/ca.js';
import {
  egressNetworkCreateArgs,
  proxyConfig,
  proxyLaunch,
  resolveUpstreamHosts,
  sandboxNetworkCreateArgs,
  sandboxNetworkRunArgs,
  type ProxyContainerSpec,
} from '../../src/cli/session/proxy-args.js';
import { PROXY_UID } from '../../src/cli/session/proxy-image.js';

/**
 * The network sandbox's topology as argv: the sandbox network is internal (no route out, no engine DNS), the proxy
 * runs unprivileged on both networks, the sandbox resolves through the proxy only and trusts the per-run CA from
 * files that hold the certificate and never its key.
 */

const LABELS = ['--label', 'io.airlock.run=abc'];
const NETWORKS = { internal: 'airlock-sandbox-net-abc', egress: 'airlock-egress-net-abc' };
const spec: ProxyContainerSpec = {
  name: 'airlock-proxy-abc',
  image: 'airlock-proxy:1234',
  networks: NETWORKS,
  labels: LABELS,
  limits: { nofile: 20000, nproc: 32768 },
};

describe('the sandbox network', () => {
  for (const kind of ['podman', 'docker'] as const) {
    it(`is --internal on ${kind}: no route out of it`, () => {
      const args = sandboxNetworkCreateArgs(kind, NETWORKS.internal, LABELS);
      assert.deepEqual(args.slice(0, 2), ['network', 'create']);
      assert.ok(args.includes('--internal'), args.join(' '));
      assert.equal(args.at(-1), NETWORKS.internal);
      for (const label of LABELS) assert.ok(args.includes(label));
    });
  }

  it('gets no engine DNS on Podman and no host address on the Docker bridge', () => {
    assert.ok(sandboxNetworkCreateArgs('podman', 'n', []).includes('--disable-dns'));
    const docker = sandboxNetworkCreateArgs('docker', 'n', []);
    assert.equal(docker[docker.indexOf('-o') + 1], 'com.docker.network.bridge.inhibit_ipv4=true');
  });

  it('the egress network is an ordinary one, labelled for cleanup', () => {
    assert.deepEqual(egressNetworkCreateArgs(NETWORKS.egress, LABELS), [
      'network',
      'create',
      ...LABELS,
      NETWORKS.egress,
    ]);
  });

  it('the sandbox container joins only the internal network, resolves through the proxy, and has no IPv6', () => {
    const args = sandboxNetworkRunArgs(NETWORKS, '10.89.0.2');
    assert.deepEqual(
      args.flatMap((a, i) => (a === '--network' ? [args[i + 1]] : [])),
      [NETWORKS.internal],
    );
    assert.equal(args[args.indexOf('--dns') + 1], '10.89.0.2');
    assert.ok(args.includes('--sysctl=net.ipv6.conf.all.disable_ipv6=1'));
    assert.ok(args.includes('--sysctl=net.ipv6.conf.default.disable_ipv6=1'));
  });
});

describe('the proxy container', () => {
  const hardening = [
    '--interactive',
    '--pull=never',
    '--log-driver=none',
    `--user=${PROXY_UID}:${PROXY_UID}`,
    '--read-only',
    '--cap-drop=ALL',
    '--security-opt=no-new-privileges',
    '--sysctl=net.ipv4.ip_unprivileged_port_start=0',
    '--pids-limit=512',
    '--ulimit=nofile=20000:20000',
    '--ulimit=nproc=4096:4096',
  ];

  it('Podman: one attached `run --rm` on both networks, unprivileged, read-only, no capabilities', () => {
    const launch = proxyLaunch('podman', spec);
    assert.deepEqual(launch.prepare, []);
    const args = launch.attach;
    assert.deepEqual(args.slice(0, 2), ['run', '--rm']);
    for (const flag of hardening) assert.ok(args.includes(flag), `missing ${flag}`);
    assert.ok(!args.some((a) => a.startsWith('--cap-add') || a === '--privileged'));
    assert.deepEqual(
      args.flatMap((a, i) => (a === '--network' ? [args[i + 1]] : [])),
      [NETWORKS.internal, NETWORKS.egress],
    );
    assert.equal(args.at(-1), spec.image, 'the image is last: no command line, the config comes on stdin');
    assert.equal(args[args.indexOf('--name') + 1], spec.name);
  });

  it('Docker: created on the internal network, connected to egress, then started attached', () => {
    const launch = proxyLaunch('docker', spec);
    const [create, connect] = launch.prepare.map((s) => s.args);
    assert.deepEqual(create!.slice(0, 2), ['create', '--rm']);
    for (const flag of hardening) assert.ok(create!.includes(flag), `missing ${flag}`);
    assert.deepEqual(
      create!.flatMap((a, i) => (a === '--network' ? [create![i + 1]] : [])),
      [NETWORKS.internal],
    );
    assert.equal(create!.at(-1), spec.image);
    assert.deepEqual(connect, ['network', 'connect', NETWORKS.egress, spec.name]);
    assert.deepEqual(launch.attach, ['start', '--attach', '--interactive', spec.name]);
  });

  it('file and process limits stay within what the proxy needs, even on a generous host', () => {
    const args = proxyLaunch('podman', { ...spec, limits: { nofile: 1_048_576, nproc: 4_194_304 } }).attach;
    assert.ok(args.includes('--ulimit=nofile=65536:65536'));
    assert.ok(args.includes('--ulimit=nproc=4096:4096'));
  });
});

function policy(sandbox: Record<string, unknown> = {}, domains: string[] = ['api.test']): LoadedPolicy {
  return {
    configDir: null,
    layout: 'none',
    warnings: [],
    sandbox: SandboxConfigSchema.parse(sandbox),
    envRefs: new Map(),
    allowlist: { domains, url_prefixes: [] },
    allowlistSha256: 'f'.repeat(64),
    files: {},
    build: null,
  };
}

describe('the proxy configuration', () => {
  it('is valid on the wire, listens on the standard ports and logs to stdout only', async () => {
    const ca = await generateRunCa();
    const config = proxyConfig({
      policy: policy({ upstream_dns: ['10.0.0.53'] }),
      credentials: { masked: [], signing: [] },
      ca,
      runId: 'abc',
      sandboxAddress: '10.89.0.2',
      hostGateway: null,
      hostAddresses: ['192.0.2.7'],
    });
    assert.deepEqual(decodeProxyConfig(encodeProxyConfig(config).trimEnd()), config);
    assert.deepEqual(config.listen, { host: '0.0.0.0', http: 80, https: 443, dns: 53, ports: [] });
    assert.deepEqual(config.log, { stdout: true });
    assert.equal(config.sandboxAddress, '10.89.0.2');
    assert.deepEqual(config.upstream.dns, ['10.0.0.53']);
    assert.deepEqual(config.upstream.hostAddresses, ['192.0.2.7']);
    assert.equal(config.upstream.caPem, undefined);
    assert.deepEqual(config.run, { id: 'abc', policySha256: 'f'.repeat(64) });
    assert.equal(config.ca.keyPem, ca.keyPem, 'the key travels to the proxy, and only there');
  });

  it('gets a listener for each further port the allowlist names, and none for 53, 80 or 443', async () => {
    const config = proxyConfig({
      policy: policy({}, ['registry.internal:5000', '*.git.internal:8443', 'a.test:443', 'b.test:80', 'c.test:5000']),
      credentials: { masked: [], signing: [] },
      ca: await generateRunCa(),
      runId: 'abc',
      sandboxAddress: '10.89.0.2',
      hostGateway: null,
      hostAddresses: [],
    });
    assert.deepEqual(config.listen.ports, [5000, 8443]);
  });

  it('host-gateway becomes the egress gateway; names are lower-cased', () => {
    const hosts = { 'Git.Internal': '10.0.0.5:8443', 'self.test': 'host-gateway', 'port.test': 'host-gateway:8080' };
    assert.deepEqual(resolveUpstreamHosts(hosts, '10.89.1.1'), {
      'git.internal': '10.0.0.5:8443',
      'self.test': '10.89.1.1',
      'port.test': '10.89.1.1:8080',
    });
    assert.throws(() => resolveUpstreamHosts(hosts, null), /upstream_hosts\.self\.test: .*no gateway/);
  });
});

describe('the sandbox trusts the per-run CA', () => {
  it('from files that hold its certificate and never its private key', async () => {
    const ca = await generateRunCa();
    const dir = await mkdtemp(join(tmpdir(), 'airlock-trust-'));
    try {
      const trust = await writeSandboxTrust(dir, ca);
      assert.deepEqual(
        trust.mounts.map((m) => m.target),
        [SANDBOX_CA_PATH, ...SYSTEM_CA_BUNDLES],
      );
      const keyBody = ca.keyPem.replace(/-----[^-]+-----|\s/g, '');
      const keyDer = createPrivateKey(ca.keyPem).export({ format: 'der', type: 'pkcs8' });
      // Everything the sandbox can read from the run directory, mounted or not.
      const files = new Set([...trust.mounts.map((m) => m.source), ...(await readdir(dir)).map((f) => join(dir, f))]);
      for (const file of files) {
        const bytes = await readFile(file);
        const text = bytes.toString('latin1');
        assert.ok(!text.includes('PRIVATE KEY'), `${file} holds a private key`);
        assert.ok(!text.replace(/\s/g, '').includes(keyBody.slice(0, 64)), `${file} holds the key's PEM body`);
        assert.ok(!bytes.includes(keyDer.subarray(-32)), `${file} holds the key's bytes`);
        assert.equal(new X509Certificate(bytes).fingerprint256, new X509Certificate(ca.certPem).fingerprint256);
        assert.equal((await stat(file)).mode & 0o777, 0o644);
      }
      for (const m of trust.mounts) assert.equal(m.readOnly, true, m.target);
      assert.deepEqual(Object.keys(trust.env), CA_ENV_VARIABLES);
      assert.ok(Object.values(trust.env).every((v) => v === SANDBOX_CA_PATH));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
