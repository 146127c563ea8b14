import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateRunCa } from '../../src/cli/session/ca.js';
import {
  decodeCanaryLine,
  decodeProbeArgs,
  encodeProbeArgs,
  PROBE_EXIT,
  PROXY_POD_ENV,
} from '../../src/protocol/proxy-pod.js';
import { runNetworkPolicyProbe } from '../../src/proxy/netpolicy-probe.js';
import { runProxyPod } from '../../src/proxy/pod.js';

/**
 * The proxy program's Kubernetes side on loopback: pod mode reads its configuration file, takes the pod IP from
 * its environment (failing closed without it), reports ready, and the canary reports who connected; the probe
 * passes only when the allowed target answers and every forbidden one does not.
 */

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'airlock-proxy-pod-'));
});
after(() => rm(work, { recursive: true, force: true }));

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

async function configFile(): Promise<string> {
  const file = join(work, `config-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(
    file,
    JSON.stringify({
      version: 1,
      allowlist: { domains: ['api.test'], url_prefixes: [] },
      ca: await generateRunCa(),
      listen: { host: '127.0.0.1', http: 0, https: 0, dns: 0 },
      upstream: { dns: [], hosts: {}, connectTimeoutMs: 1000 },
      credentials: { masked: [], signing: [] },
      run: { id: 'pod-test', policySha256: '00' },
      log: { stdout: true },
    }),
  );
  return file;
}

function collector() {
  const lines: string[] = [];
  let waiters: Array<() => void> = [];
  return {
    lines,
    write(chunk: string) {
      lines.push(...chunk.split('\n').filter(Boolean));
      for (const w of waiters) w();
      waiters = [];
    },
    async until(match: RegExp): Promise<string> {
      for (;;) {
        const hit = lines.find((l) => match.test(l));
        if (hit) return hit;
        await new Promise<void>((r) => waiters.push(r));
      }
    },
  };
}

describe('the proxy in pod mode', { timeout: 30_000 }, () => {
  test('reads its file, is ready, and the canary reports every connection', async () => {
    const stdout = collector();
    const stderr = collector();
    const stop = new AbortController();
    const canaryPort = await freePort();
    const running = runProxyPod({
      env: {
        [PROXY_POD_ENV.configFile]: await configFile(),
        [PROXY_POD_ENV.podIp]: '10.0.0.5',
        [PROXY_POD_ENV.canaryPort]: String(canaryPort),
      },
      stdout,
      stderr,
      signal: stop.signal,
    });
    await stdout.until(/^AIRLOCK-PROXY-READY /);
    const socket = net.connect({ host: '127.0.0.1', port: canaryPort });
    await new Promise((r) => socket.on('close', r).on('error', r));
    const line = await stdout.until(/^AIRLOCK-CANARY /);
    assert.deepEqual(decodeCanaryLine(line), { from: '127.0.0.1' });
    stop.abort();
    assert.equal(await running, 0);
  });

  test('without its pod IP it refuses to start, naming the field, never a value', async () => {
    const stdout = collector();
    const stderr = collector();
    const code = await runProxyPod({
      env: { [PROXY_POD_ENV.configFile]: await configFile(), [PROXY_POD_ENV.canaryPort]: '9443' },
      stdout,
      stderr,
      signal: new AbortController().signal,
    });
    assert.equal(code, 1);
    assert.match(stderr.lines.join('\n'), /sandboxAddress/);
    assert.doesNotMatch(stderr.lines.join('\n'), /PRIVATE KEY/);
    assert.equal(stdout.lines.length, 0);
  });

  test('an unreadable configuration file is a clear failure', async () => {
    const stderr = collector();
    const code = await runProxyPod({
      env: {
        [PROXY_POD_ENV.configFile]: join(work, 'missing.json'),
        [PROXY_POD_ENV.podIp]: '10.0.0.5',
        [PROXY_POD_ENV.canaryPort]: '9443',
      },
      stdout: collector(),
      stderr,
      signal: new AbortController().signal,
    });
    assert.equal(code, 1);
    assert.match(stderr.lines.join('\n'), /cannot read the configuration .*ENOENT/);
  });
});

describe('the NetworkPolicy probe', { timeout: 30_000 }, () => {
  let allowed: net.Server;
  let canary: net.Server;
  let allowedPort: number;
  let canaryPort: number;
  before(async () => {
    const listen = async () => {
      const s = net.createServer((c) => c.destroy());
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      return s;
    };
    [allowed, canary] = await Promise.all([listen(), listen()]);
    allowedPort = (allowed.address() as AddressInfo).port;
    canaryPort = (canary.address() as AddressInfo).port;
  });
  after(async () => {
    await Promise.all([allowed, canary].map((s) => new Promise((r) => s.close(r))));
  });

  const probe = async (forbiddenPort: number, allowedTarget = allowedPort) => {
    const lines: string[] = [];
    const log = join(work, `termination-${forbiddenPort}-${allowedTarget}`);
    const code = await runNetworkPolicyProbe(
      {
        allowed: { host: '127.0.0.1', port: allowedTarget },
        forbidden: [{ host: '127.0.0.1', port: forbiddenPort }],
        deadlineMs: 1500,
      },
      { stderr: { write: (c: string) => lines.push(c) }, terminationLog: log, connectTimeoutMs: 300 },
    );
    return { code, message: await readFile(log, 'utf8') };
  };

  test('a forbidden target that answers: not enforced (10), and the message says what was reached', async () => {
    const { code, message } = await probe(canaryPort);
    assert.equal(code, PROBE_EXIT.notEnforced);
    assert.match(message, new RegExp(`not enforced: this pod reached 127\\.0\\.0\\.1:${canaryPort}`));
  });

  test('every forbidden target unreachable and the proxy reachable: enforced (0)', async () => {
    const { code } = await probe(await freePort());
    assert.equal(code, PROBE_EXIT.enforced);
  });

  test('the proxy itself unreachable: no proof either way (11)', async () => {
    const { code, message } = await probe(await freePort(), await freePort());
    assert.equal(code, PROBE_EXIT.noControl);
    assert.match(message, /unreachable: nothing can be proven/);
  });

  const refusal = (argv: string[]): string => {
    const decoded = decodeProbeArgs(argv);
    assert.equal(typeof decoded, 'string', 'refused');
    return decoded as string;
  };

  test('its arguments round-trip, and bad ones are refused', () => {
    const args = {
      allowed: { host: '10.0.0.5', port: 443 },
      forbidden: [
        { host: '10.0.0.5', port: 9443 },
        { host: 'fd00::1', port: 443 },
      ],
      deadlineMs: 20_000,
    };
    assert.deepEqual(decodeProbeArgs(encodeProbeArgs(args)), args);
    assert.match(refusal(['--allowed', '10.0.0.5:443']), /forbidden/);
    assert.match(refusal(['--allowed', 'proxy:443', '--forbidden', '1.2.3.4:1']), /IP:PORT/);
    assert.match(refusal(['--allowed', '1.2.3.4:0', '--forbidden', '1.2.3.4:1']), /IP:PORT/);
  });
});
