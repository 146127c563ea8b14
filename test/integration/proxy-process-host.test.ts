import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { decodeProxyLine, encodeEventLine, type EventLine, type ProxyConfig } from '../../src/protocol/proxy-wire.js';
import { UsageError } from '../../src/cli/errors.js';
import { stateDir } from '../../src/cli/host/state-dir.js';
import { generateRunCa } from '../../src/cli/session/ca.js';
import { openNetworkLogSink } from '../../src/cli/session/network-log-sink.js';
import { superviseProxy } from '../../src/cli/session/proxy-process.js';

/**
 * The host's half of the proxy wire, against the real proxy program: the config handshake, event lines into the
 * network log, and stopping by closing stdin; and what the host does with a proxy that fails, hangs or ignores EOF.
 */

const REPO = join(import.meta.dirname, '../..');
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'airlock-proxy-host-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

function node(args: string[]) {
  return spawn(process.execPath, args, { cwd: REPO, stdio: 'pipe' });
}

async function config(): Promise<ProxyConfig> {
  return {
    version: 1,
    allowlist: { domains: ['api.test'], url_prefixes: [] },
    ca: await generateRunCa(),
    sandboxAddress: '10.199.1.100',
    listen: { host: '127.0.0.1', http: 0, https: 0, dns: 0 },
    upstream: { dns: [], hosts: {}, connectTimeoutMs: 2000 },
    credentials: { masked: [], signing: [] },
    run: { id: 'host-side', policySha256: '00' },
    log: { stdout: true },
  };
}

function get(port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/x', headers: { Host: host } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
  });
}

describe('the proxy process as the host drives it', { timeout: 60_000 }, () => {
  it('handshakes, hands every event line to the log, and stops when stdin closes', async () => {
    const events: EventLine[] = [];
    const proxy = superviseProxy(node(['--import', 'tsx', 'src/proxy/main.ts']), (e) => events.push(e));
    const addresses = await proxy.start(await config());
    assert.ok(addresses.http > 0 && addresses.https > 0 && addresses.dns > 0);
    assert.equal(await get(addresses.http, 'denied.test'), 403);
    await proxy.stop();
    assert.match(await proxy.exited, /the proxy exited \(code 0\)/);
    assert.equal(events[0]?.record.event, 'start', 'the TASK START line comes first');
    const blocked = events.find((e) => e.record.decision === 'blocked');
    assert.ok(blocked, JSON.stringify(events.map((e) => e.text)));
    assert.match(blocked.text, /^BLOCKED GET http:\/\/denied\.test\/x -> 403 \(host_not_allowed\)/);
  });

  it('a proxy that refuses its config fails the start with its own one-line reason', async () => {
    const proxy = superviseProxy(node(['--import', 'tsx', 'src/proxy/main.ts']), () => undefined);
    const bad = { ...(await config()), sandboxAddress: 'fd00::1' };
    await assert.rejects(proxy.start(bad), (err: Error) => {
      assert.match(err.message, /^the proxy failed to start: the proxy exited \(code 1\): .*sandboxAddress/);
      assert.ok(!err.message.includes('PRIVATE KEY'));
      return true;
    });
  });

  it('a proxy that never reports ready is given up on, and stopped', async () => {
    const proxy = superviseProxy(node(['-e', 'process.stdin.resume()']), () => undefined);
    await assert.rejects(proxy.start(await config(), 300), /did not report ready within 0.3s/);
    await proxy.stop(5_000);
    assert.match(await proxy.exited, /code 0/);
  });

  it('a proxy that ignores the end of stdin is killed after the grace period', async () => {
    const proxy = superviseProxy(node(['-e', 'setInterval(() => {}, 1000)']), () => undefined);
    await proxy.stop(200);
    assert.match(await proxy.exited, /SIGKILL/);
  });
});

function collect(): Writable & { text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return Object.assign(stream, { text: () => text });
}

function event(decision: 'allowed' | 'blocked' | 'would_block' | 'error', text: string): EventLine {
  const decoded = decodeProxyLine(encodeEventLine(JSON.stringify({ v: 1, event: 'request', decision }), text).trim());
  if (decoded.kind !== 'event') throw new Error(`not an event line: ${decoded.kind}`);
  return decoded;
}

describe('the network log on the host', { timeout: 30_000 }, () => {
  it('appends text and JSONL, echoes live lines, and counts decisions', async () => {
    const textFile = join(work, 'logs', 'net.log');
    const jsonFile = join(work, 'logs', 'net.jsonl');
    const stderr = collect();
    const sink = await openNetworkLogSink(
      { textFile, jsonFile, live: true },
      { runId: 'r1', stderr, warn: assert.fail },
    );
    sink.write(event('allowed', 'ALLOWED GET https://a.test/ -> 200'));
    sink.write(event('blocked', 'BLOCKED GET https://b.test/ -> 403 (host_not_allowed)'));
    sink.write(event('error', 'ERROR GET https://c.test/ -> connect timeout'));
    await sink.close();
    assert.deepEqual(sink.counts(), { allowed: 1, blocked: 1, errors: 1, logPath: textFile });
    assert.equal((await readFile(textFile, 'utf8')).split('\n').length, 4);
    assert.equal((await readFile(jsonFile, 'utf8')).split('\n').filter(Boolean).length, 3);
    assert.match(stderr.text(), /^\[net\] ALLOWED GET/);
    assert.equal((await stat(textFile)).mode & 0o777, 0o600);
  });

  it('keeps an unrequested log only when it explains a blocked request', async () => {
    const quiet = await openNetworkLogSink({ live: false }, { runId: 'quiet', stderr: collect(), warn: assert.fail });
    quiet.write(event('allowed', 'ALLOWED GET https://a.test/ -> 200'));
    await quiet.close();
    await assert.rejects(stat(quiet.counts().logPath!), { code: 'ENOENT' });

    const loud = await openNetworkLogSink({ live: false }, { runId: 'loud', stderr: collect(), warn: assert.fail });
    loud.write(event('blocked', 'BLOCKED GET https://b.test/ -> 403 (host_not_allowed)'));
    await loud.close();
    assert.match(await readFile(loud.counts().logPath!, 'utf8'), /BLOCKED GET/);
    await rm(loud.counts().logPath!);

    // An audit run refuses nothing, yet its would-be-blocked requests are what the log is for.
    const audit = await openNetworkLogSink({ live: false }, { runId: 'audit', stderr: collect(), warn: assert.fail });
    audit.write(event('allowed', 'ALLOWED GET https://a.test/ -> 200'));
    audit.write(event('would_block', 'WOULD_BLOCK GET https://b.test/ -> 200 (host_not_allowed)'));
    await audit.close();
    assert.match(await readFile(audit.counts().logPath!, 'utf8'), /WOULD_BLOCK GET/);
    await rm(audit.counts().logPath!);
  });

  it('a log path that cannot be written is a usage error naming the flag, before anything starts', async () => {
    await writeFile(join(work, 'a-file'), '');
    await assert.rejects(
      openNetworkLogSink({ textFile: work, live: false }, { runId: 'x', stderr: collect(), warn: assert.fail }),
      (err: Error) =>
        err instanceof UsageError && /^--network-log .*: cannot write the network log there/.test(err.message),
    );
    const runId = `json-fails-${randomUUID()}`;
    await assert.rejects(
      openNetworkLogSink(
        { jsonFile: join(work, 'a-file', 'net.jsonl'), live: false },
        { runId, stderr: collect(), warn: assert.fail },
      ),
      (err: Error) => err instanceof UsageError && /^--network-log-json /.test(err.message),
    );
    const kept = await readdir(stateDir('network-logs')).catch(() => []);
    assert.deepEqual(
      kept.filter((name) => name.includes(runId)),
      [],
      'no unrequested log left behind',
    );
  });
});
