import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import tls from 'node:tls';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { formatJsonLine, formatTextLine, type NetworkLog } from '../../src/proxy/log/network-log.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';
import {
  startHttpUpstream,
  startHttpsUpstream,
  startProxyFixture,
  type FakeUpstream,
  type ProxyFixture,
} from '../helpers/upstream.js';

/**
 * Bounded fuzzing of the live proxy's HTTP/1.1 parser and TLS front door, the two listeners the sandbox talks to.
 * Malformed, ambiguous and smuggling-shaped requests go to the plain and the TLS listener; damaged and re-named
 * ClientHellos go to the TLS listener. The properties: the process survives, every connection is closed by the
 * proxy soon after the client finishes sending (no hang), every answer is well-formed HTTP, heap growth is bounded,
 * and nothing outside the allowlist ever reaches an upstream: the blocked host's upstream never sees a connection and
 * the path-restricted upstream only ever sees the one request its rule allows.
 *
 * Inputs come from a seeded PRNG; the seed is printed, and AIRLOCK_FUZZ_SEED=N replays a run.
 */

const SEED = Number(process.env.AIRLOCK_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const HTTP_CASES = 2500;
const TLS_CASES = 1500;
const TIME_BUDGET_MS = 20_000;
const WORKERS = 24;
/** After the client's FIN, the proxy must close within this. */
const CLOSE_DEADLINE_MS = 5_000;
const LEAF_CACHE = 16;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** mulberry32: small, fast, and good enough to pick fuzz inputs reproducibly. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    int,
    chance: (p: number) => next() < p,
    pick: <T>(items: readonly T[]): T => items[int(items.length)]!,
    bytes(n: number): Buffer {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = int(256);
      return b;
    },
  };
}
type Rng = ReturnType<typeof prng>;

let fx: ProxyFixture;
let paths: FakeUpstream;
let open: FakeUpstream;
/** plain.test: the upstream of allowed requests on the plain-HTTP listener (the proxy speaks HTTP to it). */
let plain: FakeUpstream;
let blocked: FakeUpstream;
const logCounts = { allowed: 0, blocked: 0, error: 0, other: 0 };

before(async () => {
  const pki = await makeTestPki(['paths.test', 'open.test', 'blocked.test']);
  [paths, open, blocked] = await Promise.all([
    startHttpsUpstream(pki),
    startHttpsUpstream(pki),
    startHttpsUpstream(pki),
  ]);
  plain = await startHttpUpstream();
  // Every event goes through both formatters, so a hostile request line or header must also survive logging.
  const log: NetworkLog = {
    write(event) {
      formatTextLine(event);
      formatJsonLine(event);
      const decision: string | undefined = 'decision' in event ? event.decision : undefined;
      if (decision === 'allowed' || decision === 'blocked' || decision === 'error') logCounts[decision]++;
      else logCounts.other++;
    },
  };
  fx = await startProxyFixture({
    allowlist: {
      domains: ['open.test', 'plain.test'],
      url_prefixes: [{ host: 'paths.test', path: '/ok', methods: ['GET'] }],
    },
    log,
    limits: { leafCacheSize: LEAF_CACHE, drainTimeoutMs: 1_000 },
    upstream: {
      caPem: pki.caPem,
      connectTimeoutMs: 1_000,
      hosts: {
        'paths.test': `127.0.0.1:${paths.port}`,
        'open.test': `127.0.0.1:${open.port}`,
        'plain.test': `127.0.0.1:${plain.port}`,
        'blocked.test': `127.0.0.1:${blocked.port}`,
      },
    },
  });
});

after(async () => {
  await fx?.close();
  await Promise.all([paths?.close(), open?.close(), blocked?.close(), plain?.close()]);
});

function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

// ---------- HTTP/1.1 request generator ----------

const METHODS = [
  'GET',
  'GET',
  'POST',
  'PUT',
  'HEAD',
  'DELETE',
  'OPTIONS',
  'TRACE',
  'CONNECT',
  'get',
  'G ET',
  'GET\0',
  'PRI',
];
const TARGETS = [
  '/ok',
  '/ok',
  '/ok?x=1',
  '/secret',
  '/OK',
  '/ok/../secret',
  '/%6fk',
  '//blocked.test/ok',
  '*',
  'http://paths.test/ok',
  'http://blocked.test/ok',
  'https://blocked.test/ok',
  'http://paths.test@blocked.test/ok',
  'http://blocked.test#@paths.test/ok',
  'paths.test:443',
  'blocked.test:443',
  '/ok#frag',
  '/ok\tx',
  '/ok\0',
  '/ok /secret',
  '',
];
const VERSIONS = [
  'HTTP/1.1',
  'HTTP/1.1',
  'HTTP/1.0',
  'HTTP/2.0',
  'HTTP/0.9',
  'HTTP/1.1 x',
  'HTTP/1.10',
  'http/1.1',
  '',
];
const HOSTS = [
  'paths.test',
  'paths.test',
  'open.test',
  'plain.test',
  'blocked.test',
  'paths.test:443',
  'paths.test:80',
  'PATHS.test',
  'paths.test.',
  'paths.test@blocked.test',
  'blocked.test#paths.test',
  ' paths.test',
  'paths.test blocked.test',
  'paths.test,blocked.test',
  'paths.test\0blocked.test',
  '[::1]',
  '127.0.0.1',
  '',
];
const EXTRA_HEADERS = [
  'Content-Length: 5',
  'Content-Length: 0',
  'Content-Length: -1',
  'Content-Length: 1, 2',
  'Content-Length: 99999999999999999999',
  'Content-Length: 0x10',
  'Transfer-Encoding: chunked',
  'Transfer-Encoding: chunked, identity',
  'Transfer-Encoding:  chunked',
  'Transfer-Encoding: xchunked',
  'Transfer-Encoding\t: chunked',
  'Connection: Upgrade',
  'Upgrade: websocket',
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
  'Sec-WebSocket-Version: 13',
  'Expect: 100-continue',
  'X-Forwarded-Host: blocked.test',
  'X-Original-URL: /secret',
  ':authority: blocked.test',
  'Proxy-Connection: keep-alive',
  'Connection: close',
  'Connection: keep-alive, Host',
  'Authorization: Bearer x',
  'no-colon-here',
  ' leading-space: 1',
  'X-Folded: a\r\n b',
  'X-Bare-CR: a\rb',
  'X-Nul: a\0b',
  'X-Utf8: \u00e9\u00e8',
];
const SMUGGLED = 'GET /secret HTTP/1.1\r\nHost: paths.test\r\n\r\n';

/**
 * Half the cases are wild (every part drawn from the lists above); half are tame (a valid request to one of the
 * fixture hosts with a part or two swapped), so the allowed path, the denied path and the parser's edges all get
 * traffic.
 */
function httpRequest(r: Rng): Buffer {
  const wild = r.chance(0.5);
  const eol = r.chance(0.9) ? '\r\n' : r.pick(['\n', '\r', '\r\r\n', '\n\r']);
  const lines: string[] = [];
  const method = wild || r.chance(0.15) ? r.pick(METHODS) : 'GET';
  const target = wild || r.chance(0.25) ? r.pick(TARGETS) : r.pick(['/ok', '/ok', '/anything', '/secret']);
  const version = wild || r.chance(0.1) ? r.pick(VERSIONS) : 'HTTP/1.1';
  const requestLine = [method, target, version];
  lines.push(wild && r.chance(0.1) ? requestLine.join(r.pick(['  ', '\t', ''])) : requestLine.join(' '));
  const hostCount = wild && r.chance(0.3) ? r.pick([0, 2, 3]) : 1;
  for (let i = 0; i < hostCount; i++) {
    const name = wild ? r.pick(['Host', 'host', 'HOST', 'Host ', 'Hos t']) : 'Host';
    const value =
      wild || r.chance(0.15) ? r.pick(HOSTS) : r.pick(['paths.test', 'open.test', 'plain.test', 'blocked.test']);
    lines.push(`${name}: ${value}`);
  }
  for (let i = wild ? r.int(5) : r.chance(0.3) ? 1 : 0; i > 0; i--) lines.push(r.pick(EXTRA_HEADERS));
  if (r.chance(0.04)) lines.push(`X-Big: ${'a'.repeat(r.int(40_000))}`);
  if (r.chance(0.02)) for (let i = 0; i < 150; i++) lines.push(`X-Many-${i}: ${i}`);
  let body = '';
  switch (wild ? r.int(5) : r.int(12)) {
    case 0:
      body = SMUGGLED;
      break;
    case 1:
      body = `0${eol}${eol}${SMUGGLED}`;
      break;
    case 2:
      body = `5${eol}hello${eol}0${eol}${eol}`;
      break;
    case 3:
      body = r.bytes(r.int(64)).toString('latin1');
      break;
    default:
  }
  // A tame body usually comes with its length, so the forwarding path (not only the parser) sees bodies.
  if (!wild && body !== '' && r.chance(0.7)) lines.push(`Content-Length: ${Buffer.byteLength(body, 'latin1')}`);
  let text = lines.join(eol) + eol + eol + body;
  if (r.chance(0.25)) text += httpRequestText(r, eol); // pipelined follow-up
  return wild ? mutate(r, Buffer.from(text, 'latin1')) : Buffer.from(text, 'latin1');
}

function httpRequestText(r: Rng, eol: string): string {
  return `${r.pick(METHODS)} ${r.pick(TARGETS)} HTTP/1.1${eol}Host: ${r.pick(HOSTS)}${eol}${eol}`;
}

/** Damage the way fuzzers damage things: flipped bits, overwritten bytes, cuts, duplicated slices, random tails. */
function mutate(r: Rng, input: Buffer): Buffer {
  if (!r.chance(0.35) || input.length === 0) return input;
  let out = Buffer.from(input);
  for (let m = 1 + r.int(4); m > 0 && out.length > 0; m--) {
    switch (r.int(6)) {
      case 0:
        out[r.int(out.length)]! ^= 1 << r.int(8);
        break;
      case 1:
        out[r.int(out.length)] = r.pick([0x00, 0x0a, 0x0d, 0x20, 0x3a, 0x7f, 0xff]);
        break;
      case 2:
        out = out.subarray(0, r.int(out.length));
        break;
      case 3: {
        const at = r.int(out.length);
        const len = r.int(Math.min(64, out.length - at) + 1);
        out = Buffer.concat([out.subarray(0, at), out.subarray(at, at + len), out.subarray(at)]);
        break;
      }
      case 4:
        out = Buffer.concat([out, r.bytes(r.int(128))]);
        break;
      default: {
        const at = r.int(out.length);
        out = Buffer.concat([out.subarray(0, at), r.bytes(1 + r.int(8)), out.subarray(at)]);
      }
    }
  }
  return Buffer.from(out);
}

// ---------- one exchange ----------

interface Exchange {
  /** Everything the proxy sent back (decrypted when over TLS). */
  reply: Buffer;
  /** The proxy closed the connection within CLOSE_DEADLINE_MS of our FIN (or earlier by itself). */
  closedByProxy: boolean;
  tlsError?: string;
}

/**
 * Writes `bytes`, reads until the proxy has been quiet for a moment (or closes), then half-closes and requires the
 * proxy to close its side before the deadline. A connection that stays open after our FIN is a hang.
 */
function exchange(socket: net.Socket | tls.TLSSocket, bytes: Buffer, connectEvent: string): Promise<Exchange> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let closed = false;
    let tlsError: string | undefined;
    let quiet: NodeJS.Timeout | undefined;
    let deadline: NodeJS.Timeout | undefined;
    const finish = (closedByProxy: boolean) => {
      clearTimeout(quiet);
      clearTimeout(deadline);
      socket.destroy();
      resolve({ reply: Buffer.concat(chunks), closedByProxy, tlsError });
    };
    const halfClose = () => {
      if (closed) return;
      socket.end();
      deadline = setTimeout(() => finish(false), CLOSE_DEADLINE_MS);
    };
    const armQuiet = (ms: number) => {
      clearTimeout(quiet);
      if (!deadline) quiet = setTimeout(halfClose, ms);
    };
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      armQuiet(200);
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      tlsError ??= e.code ?? e.message;
    });
    socket.on('close', () => {
      closed = true;
      finish(true);
    });
    socket.once(connectEvent, () => {
      socket.write(bytes);
      armQuiet(800);
    });
  });
}

const STATUS_LINE = /^HTTP\/1\.[01] [1-5]\d\d /;

/** Every response on the connection, in order: the status lines the proxy wrote. */
function statusLines(reply: Buffer): string[] {
  return reply
    .toString('latin1')
    .split('\r\n')
    .filter((l) => l.startsWith('HTTP/'));
}

async function runWorkers(total: number, one: (index: number) => Promise<void>): Promise<{ done: number; ms: number }> {
  const started = Date.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: WORKERS }, async () => {
      while (next < total && Date.now() - started < TIME_BUDGET_MS) await one(next++);
    }),
  );
  return { done: Math.min(next, total), ms: Date.now() - started };
}

function assertNothingOutsideTheAllowlistArrived(): void {
  assert.equal(blocked.connections, 0, `seed ${SEED}: the blocked host's upstream was connected to`);
  for (const r of paths.received) {
    const host = r.rawHeaders.filter((_, i, all) => i % 2 === 0 && all[i]!.toLowerCase() === 'host');
    assert.equal(r.method, 'GET', `seed ${SEED}: ${r.method} ${r.url} reached the path-restricted upstream`);
    // Rules match the path percent-decoded once (Airut's semantics), so `/%6fk` is `/ok`; decoded independently here.
    const decoded = r.url.replace(/%([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    assert.equal(decoded, '/ok', `seed ${SEED}: ${r.method} ${r.url} reached the path-restricted upstream`);
    assert.equal(host.length, 1, `seed ${SEED}: a request with ${host.length} Host headers reached the upstream`);
  }
}

async function assertStillServing(): Promise<void> {
  const ok = await fx.https('paths.test', { path: '/ok' });
  assert.equal(ok.status, 200, ok.body);
  const overHttp = await fx.http('plain.test', { path: '/anything' });
  assert.equal(overHttp.status, 200, overHttp.body);
  const before = paths.received.length;
  const denied = await fx.https('paths.test', { path: '/secret' });
  assert.equal(denied.status, 403);
  assert.equal((JSON.parse(denied.body) as { error: string }).error, 'blocked_by_network_allowlist');
  const other = await fx.https('blocked.test', { path: '/ok' });
  assert.equal(other.status, 403);
  assert.equal(paths.received.length, before, 'a denied request reached the upstream');
  assertNothingOutsideTheAllowlistArrived();
}

void test('HTTP/1.1 fuzz on both listeners: answers are well-formed, connections close, nothing blocked gets through', async (t) => {
  t.diagnostic(`seed ${SEED} (AIRLOCK_FUZZ_SEED=${SEED} replays it)`);
  const heapBefore = heapAfterGc();
  const rng = prng(SEED);
  const statuses = new Map<string, number>();
  const hangs: string[] = [];
  const garbled: string[] = [];
  const sni = ['paths.test', 'open.test', 'blocked.test', 'PATHS.TEST', 'other.test'];
  const { done, ms } = await runWorkers(HTTP_CASES, async (index) => {
    const bytes = httpRequest(rng);
    const overTls = rng.chance(0.5);
    const servername = rng.pick(sni);
    const socket = overTls
      ? tls.connect({ host: '127.0.0.1', port: fx.proxy.addresses.https, servername, ca: fx.runCa.certPem })
      : net.connect(fx.proxy.addresses.http, '127.0.0.1');
    const x = await exchange(socket, bytes, overTls ? 'secureConnect' : 'connect');
    const sample = JSON.stringify(bytes.subarray(0, 160).toString('latin1'));
    if (!x.closedByProxy) hangs.push(`#${index} ${overTls ? `tls(${servername})` : 'plain'} ${sample}`);
    if (x.reply.length > 0 && !STATUS_LINE.test(x.reply.toString('latin1')))
      garbled.push(`#${index} ${sample} -> ${JSON.stringify(x.reply.subarray(0, 80).toString('latin1'))}`);
    for (const line of statusLines(x.reply)) {
      const code = line.slice(9, 12);
      statuses.set(code, (statuses.get(code) ?? 0) + 1);
    }
  });

  t.diagnostic(`${done} connections in ${ms} ms; statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
  t.diagnostic(`log events ${JSON.stringify(logCounts)}; path upstream saw ${paths.received.length} requests`);
  assert.ok(done >= 500, `only ${done} cases ran in the time budget`);
  assert.equal(
    hangs.length,
    0,
    `seed ${SEED}: ${hangs.length} connections open after the client's FIN, e.g.\n${hangs.slice(0, 5).join('\n')}`,
  );
  assert.equal(
    garbled.length,
    0,
    `seed ${SEED}: ${garbled.length} replies that are not HTTP, e.g.\n${garbled.slice(0, 5).join('\n')}`,
  );
  // The generator must actually exercise both sides of the policy, or the safety assertions prove nothing.
  assert.ok((statuses.get('200') ?? 0) > 0 && (statuses.get('403') ?? 0) > 0 && (statuses.get('400') ?? 0) > 0);
  assertNothingOutsideTheAllowlistArrived();
  await assertStillServing();
  const growth = heapAfterGc() - heapBefore;
  t.diagnostic(`heap +${(growth / 1048576).toFixed(2)} MiB`);
  assert.ok(growth < 32 * 1024 * 1024, `seed ${SEED}: heap grew ${(growth / 1048576).toFixed(1)} MiB`);
});

// ---------- TLS ClientHello generator ----------

/** Real ClientHellos from node's TLS client, captured off the wire, one per server name. */
async function captureClientHello(servername: string): Promise<Buffer> {
  const server = net.createServer();
  const captured = new Promise<Buffer>((resolve) =>
    server.once('connection', (s) => {
      s.once('data', (d: Buffer) => {
        resolve(d);
        s.destroy();
      });
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, servername });
  client.on('error', () => undefined);
  const hello = await captured;
  client.destroy();
  server.close();
  return hello;
}

/** Offset and length of the host name inside the server_name extension, found by walking the hello's structure. */
function sniSpan(hello: Buffer): { at: number; length: number } | null {
  let p = 5 + 4 + 2 + 32; // record header, handshake header, version, random
  p += 1 + hello[p]!; // session id
  p += 2 + hello.readUInt16BE(p); // cipher suites
  p += 1 + hello[p]!; // compression methods
  const end = p + 2 + hello.readUInt16BE(p);
  p += 2;
  while (p + 4 <= end) {
    const type = hello.readUInt16BE(p);
    const len = hello.readUInt16BE(p + 2);
    if (type === 0) return { at: p + 4 + 5, length: hello.readUInt16BE(p + 4 + 3) };
    p += 4 + len;
  }
  return null;
}

const NAME_BYTES = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_*';

/**
 * Hellos that are structurally valid but name odd servers (same-length substitution keeps every length field
 * right), hellos damaged anywhere, truncated records, lying record lengths, HTTP on the TLS port, and noise.
 */
function clientHello(r: Rng, templates: Buffer[]): Buffer {
  const template = r.pick(templates);
  switch (r.int(6)) {
    case 0:
    case 1: {
      const hello = Buffer.from(template);
      const span = sniSpan(hello);
      if (span) {
        for (let i = 0; i < span.length; i++) {
          hello[span.at + i] = r.chance(0.9) ? NAME_BYTES.charCodeAt(r.int(NAME_BYTES.length)) : r.int(256);
        }
      }
      return hello;
    }
    case 2: {
      const hello = Buffer.from(template);
      for (let m = 1 + r.int(6); m > 0; m--) hello[r.int(hello.length)]! ^= 1 << r.int(8);
      return hello;
    }
    case 3: {
      const hello = Buffer.from(template);
      const field = r.pick([3, 6, 7, 8]); // record length, handshake length bytes
      hello[field] = r.int(256);
      return r.chance(0.5) ? hello : hello.subarray(0, r.int(hello.length));
    }
    case 4:
      return r.chance(0.5)
        ? Buffer.from('GET /ok HTTP/1.1\r\nHost: paths.test\r\n\r\n')
        : Buffer.concat([Buffer.from([0x16, 0x03, r.int(5)]), r.bytes(r.int(600))]);
    default:
      return mutate(r, Buffer.concat([template, r.bytes(r.int(200))]));
  }
}

void test('TLS ClientHello fuzz: bad hellos fail cleanly, odd names mint nothing unbounded, the proxy keeps serving', async (t) => {
  t.diagnostic(`seed ${SEED}`);
  const rng = prng(SEED ^ 0x5eed);
  const names = [
    'paths.test',
    'blocked.test',
    'a.b.c.d.e.f.g.h.example',
    'x'.repeat(63) + '.test',
    'xn--bcher-kva.test',
  ];
  const templates = await Promise.all(names.map(captureClientHello));
  for (const h of templates) assert.ok(sniSpan(h), 'the captured hello carries SNI');
  const heapBefore = heapAfterGc();
  const hangs: string[] = [];
  const outcomes = new Map<string, number>();
  const { done, ms } = await runWorkers(TLS_CASES, async (index) => {
    const bytes = clientHello(rng, templates);
    const socket = net.connect(fx.proxy.addresses.https, '127.0.0.1');
    const x = await exchange(socket, bytes, 'connect');
    // A TLS alert (0x15), a handshake answer (0x16), an HTTP 400 for plaintext, or a bare close.
    const first = x.reply.length === 0 ? 'close' : `0x${x.reply[0]!.toString(16)}`;
    outcomes.set(first, (outcomes.get(first) ?? 0) + 1);
    if (!x.closedByProxy) hangs.push(`#${index} ${bytes.subarray(0, 48).toString('hex')}`);
  });

  const stats = fx.proxy.stats();
  t.diagnostic(`${done} hellos in ${ms} ms; first reply byte ${JSON.stringify(Object.fromEntries(outcomes))}`);
  t.diagnostic(`leaf cache ${stats.leafCacheSize}, leaves minted ${stats.leavesMinted}`);
  assert.ok(done >= 300, `only ${done} cases ran in the time budget`);
  assert.equal(
    hangs.length,
    0,
    `seed ${SEED}: ${hangs.length} connections open after the client's FIN, e.g.\n${hangs.slice(0, 5).join('\n')}`,
  );
  for (const key of outcomes.keys()) assert.ok(['close', '0x15', '0x16', '0x48'].includes(key), `reply ${key}`);
  assert.ok((outcomes.get('0x16') ?? 0) > 0, 'some hellos must still complete a handshake');
  assert.ok(stats.leafCacheSize <= LEAF_CACHE, `leaf cache holds ${stats.leafCacheSize} > ${LEAF_CACHE}`);
  await assertStillServing();
  const growth = heapAfterGc() - heapBefore;
  t.diagnostic(`heap +${(growth / 1048576).toFixed(2)} MiB`);
  assert.ok(growth < 32 * 1024 * 1024, `seed ${SEED}: heap grew ${(growth / 1048576).toFixed(1)} MiB`);
});
