import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { generateRunCa } from '../../src/cli/session/ca.js';
import type { ProxyConfig } from '../../src/protocol/proxy-wire.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';
import { requestViaProxy, startHttpsUpstream, type FakeUpstream } from '../helpers/upstream.js';

/**
 * The proxy container's program, bundled by scripts/bundle.mjs and run as plain `node bundle.mjs` (no node_modules, no tsx):
 * config on stdin, READY line once listening, event lines and log files while serving, exit 0 on stdin EOF,
 * exit 1 with one line on stderr for a bad config. The real credential processor is wired in.
 */

let work: string;
let bundle: string;
let upstream: FakeUpstream;
let upstreamCa: string;
const REAL = 'ghp_REALrealREALrealREALrealREALreal0000';
const SURROGATE = 'ghp_SURRsurrSURRsurrSURRsurrSURRsurr1111';

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'airlock-proxy-process-'));
  // The project's own bundling script, so what runs here is what goes into the proxy image.
  const built = spawnSync(process.execPath, ['scripts/bundle.mjs'], {
    env: { ...process.env, AIRLOCK_BUNDLE_OUT: work },
    encoding: 'utf8',
  });
  assert.equal(built.status, 0, built.stderr);
  bundle = join(work, 'proxy-bundle', 'airlock-proxy.mjs');
  const pki = await makeTestPki(['api.test']);
  upstreamCa = pki.caPem;
  upstream = await startHttpsUpstream(pki);
});

after(async () => {
  await upstream.close();
  await rm(work, { recursive: true, force: true });
});

async function config(): Promise<ProxyConfig> {
  return {
    version: 1,
    allowlist: { domains: ['api.test'], url_prefixes: [] },
    ca: await generateRunCa(),
    sandboxAddress: '10.199.1.100',
    listen: { host: '127.0.0.1', http: 0, https: 0, dns: 0 },
    upstream: {
      dns: [],
      hosts: { 'api.test': `127.0.0.1:${upstream.port}` },
      caPem: upstreamCa,
      connectTimeoutMs: 2000,
    },
    credentials: {
      masked: [
        {
          name: 'GH',
          surrogate: SURROGATE,
          value: REAL,
          scopes: ['api.test'],
          headers: ['Authorization'],
          allowForeignCredentials: false,
        },
      ],
      signing: [],
    },
    run: { id: 'run-1', policySha256: '00' },
    log: { textPath: join(work, 'net.log'), jsonPath: join(work, 'net.jsonl'), stdout: true },
  };
}

/** The READY line; event lines (the TASK START line) may come before it. */
async function readyLine(lines: AsyncIterator<string>): Promise<string> {
  for (;;) {
    const next = await lines.next();
    if (next.done) throw new Error('stdout closed before READY');
    if (!next.value.startsWith('AIRLOCK-EVENT ')) return next.value;
  }
}

function launch(): {
  child: ChildProcessWithoutNullStreams;
  lines: AsyncIterator<string>;
  exit: Promise<number | null>;
} {
  const child = spawn(process.execPath, [bundle], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return { child, lines, exit };
}

void test('reads its config, reports READY with bound ports, serves, logs, and exits 0 on stdin EOF', async () => {
  const cfg = await config();
  const { child, lines, exit } = launch();
  child.stdin.write(JSON.stringify(cfg) + '\n');
  const ready = await readyLine(lines);
  assert.match(ready, /^AIRLOCK-PROXY-READY \{"http":\d+,"https":\d+,"dns":\d+,"ports":\{\}\}$/);
  const ports = JSON.parse(ready.slice('AIRLOCK-PROXY-READY '.length)) as { https: number };

  const reply = await requestViaProxy({
    listener: 'https',
    port: ports.https,
    host: 'api.test',
    ca: cfg.ca.certPem,
    path: '/hello',
    headers: { Host: 'api.test', Authorization: `Bearer ${SURROGATE}` },
  });
  assert.equal(reply.status, 200);
  const arrived = upstream.received.findLast((r) => r.url === '/hello');
  assert.ok(arrived?.rawHeaders.includes(`Bearer ${REAL}`), 'the real credential processor is wired in');
  // The upstream echoes its request: what comes back is the surrogate the sandbox sent.
  assert.ok(reply.body.includes(`Bearer ${SURROGATE}`) && !reply.body.includes(REAL), 'the response is scrubbed');

  const events: string[] = [];
  for (;;) {
    const line = (await lines.next()).value as string;
    events.push(line);
    if (line.includes('ALLOWED GET')) break;
  }
  const allowed = events.at(-1)!;
  assert.match(
    allowed,
    /^AIRLOCK-EVENT \{.*"decision":"allowed".*\}\tALLOWED GET https:\/\/api\.test\/hello -> 200 \[masked: 1\] \[scrubbed: 1\]$/,
  );

  child.stdin.end();
  assert.equal(await exit, 0);
  const text = await readFile(join(work, 'net.log'), 'utf8');
  assert.match(text, /^=== TASK START .* ===\n/);
  assert.ok(text.includes('ALLOWED GET https://api.test/hello -> 200 [masked: 1] [scrubbed: 1]\n'));
  const jsonl = (await readFile(join(work, 'net.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { v: number });
  assert.ok(jsonl.every((r) => r.v === 1));
  assert.ok(!(text + JSON.stringify(jsonl) + events.join('')).includes(REAL), 'no real value in any log');
});

void test('SIGTERM stops it cleanly too', async () => {
  const { child, lines, exit } = launch();
  child.stdin.write(JSON.stringify({ ...(await config()), log: undefined }) + '\n');
  assert.match(await readyLine(lines), /^AIRLOCK-PROXY-READY /);
  child.kill('SIGTERM');
  assert.equal(await exit, 0);
});

void test('an invalid config exits 1 with one line on stderr naming the key, never a value', async () => {
  const cfg = await config();
  const bad = { ...cfg, sandboxAddress: 'not-an-ip', credentials: { ...cfg.credentials, masked: [{ value: REAL }] } };
  const { child, exit } = launch();
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(JSON.stringify(bad) + '\n');
  assert.equal(await exit, 1);
  assert.equal(stderr.trim().split('\n').length, 1);
  assert.match(stderr, /sandboxAddress/);
  assert.match(stderr, /credentials\.masked\.0\.surrogate/);
  assert.ok(!stderr.includes(REAL));
});

void test('a port already taken exits 1 with the reason', async () => {
  const cfg = await config();
  const first = launch();
  first.child.stdin.write(JSON.stringify({ ...cfg, log: undefined }) + '\n');
  const ports = JSON.parse((await readyLine(first.lines)).slice(20)) as { http: number };
  const second = launch();
  let stderr = '';
  second.child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  second.child.stdin.write(
    JSON.stringify({ ...cfg, log: undefined, listen: { ...cfg.listen, http: ports.http } }) + '\n',
  );
  assert.equal(await second.exit, 1);
  assert.match(stderr, /^airlock-proxy: cannot start: .*EADDRINUSE/);
  first.child.stdin.end();
  assert.equal(await first.exit, 0);
});
