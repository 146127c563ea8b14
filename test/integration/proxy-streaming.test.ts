import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import WebSocket from 'ws';
import { formatTextLine } from '../../src/proxy/log/network-log.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';
import {
  patternStream,
  startHttpsUpstream,
  startProxyFixture,
  type EchoReport,
  type FakeUpstream,
  type ProxyFixture,
} from '../helpers/upstream.js';

/**
 * Bodies stream both ways with backpressure (memory stays flat for 200 MB each way), connections are kept alive
 * on both sides, chunked bodies and `Expect: 100-continue` work, and WebSocket handshakes pass the same checks.
 */

let fx: ProxyFixture;
let upstream: FakeUpstream;
const MB = 1024 * 1024;

before(async () => {
  const pki = await makeTestPki(['stream.test', 'ws.test', 'blocked.test']);
  upstream = await startHttpsUpstream(pki);
  fx = await startProxyFixture({
    allowlist: {
      domains: ['stream.test'],
      url_prefixes: [{ host: 'ws.test', path: '/ws', methods: ['GET'] }],
    },
    upstream: {
      caPem: pki.caPem,
      hosts: {
        'stream.test': `127.0.0.1:${upstream.port}`,
        'ws.test': `127.0.0.1:${upstream.port}`,
        'blocked.test': `127.0.0.1:${upstream.port}`,
      },
    },
  });
});

after(async () => {
  await fx.close();
  await upstream.close();
});

function agentFor(): https.Agent {
  return new https.Agent({ keepAlive: true, maxSockets: 1, ca: fx.runCa.certPem, servername: 'stream.test' });
}

function request(
  options: https.RequestOptions & { host?: string },
  body?: NodeJS.ReadableStream | Buffer,
): Promise<{ status: number; res: IncomingMessage; socket: net.Socket | tls.TLSSocket }> {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1',
      port: fx.proxy.addresses.https,
      servername: 'stream.test',
      ca: fx.runCa.certPem,
      headers: { Host: 'stream.test' },
      ...options,
    });
    req.on('response', (res) => resolve({ status: res.statusCode ?? 0, res, socket: req.socket as tls.TLSSocket }));
    req.on('error', reject);
    if (body && 'pipe' in body) body.pipe(req);
    else req.end(body);
  });
}

function drain(res: IncomingMessage): Promise<{ bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    res.on('data', (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
    });
    res.on('end', () => resolve({ bytes, sha256: hash.digest('hex') }));
    res.on('error', reject);
  });
}

async function eventually<T>(probe: () => T | undefined, timeoutMs = 2000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function patternSha(total: number): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of patternStream(total)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

void describe('keep-alive', () => {
  void test('sequential requests reuse one client connection and one upstream connection', async () => {
    const agent = agentFor();
    const connectionsBefore = upstream.connections;
    const sockets = new Set<unknown>();
    for (let i = 0; i < 20; i++) {
      const { status, res, socket } = await request({ agent, path: `/ka/${i}` });
      assert.equal(status, 200);
      await drain(res);
      sockets.add(socket);
    }
    agent.destroy();
    assert.equal(sockets.size, 1, 'the client kept one connection to the proxy');
    assert.ok(upstream.connections - connectionsBefore <= 1, 'the proxy kept one connection to the upstream');
  });
});

void describe('large bodies stream with bounded memory', () => {
  const SIZE = 200 * MB;

  void test('a 200 MB download arrives intact while memory stays flat', async () => {
    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      const { status, res } = await request({ path: `/bytes/${SIZE}` });
      assert.equal(status, 200);
      const got = await drain(res);
      assert.equal(got.bytes, SIZE);
      assert.equal(got.sha256, await patternSha(SIZE));
    } finally {
      clearInterval(sampler);
    }
    assert.ok(peak - rssBefore < 100 * MB, `RSS grew by ${Math.round((peak - rssBefore) / MB)} MB`);
    // The line is written when the proxy's last write completes, which can be just after the client's last read.
    const line = await eventually(() =>
      fx.log.events.find((e) => e.event === 'request' && e.path === `/bytes/${SIZE}`),
    );
    assert.equal(line.event === 'request' && line.bytesOut, SIZE);
  });

  void test('a 200 MB chunked upload arrives intact while memory stays flat', async () => {
    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      const { status, res } = await request(
        { method: 'PUT', path: '/upload', headers: { Host: 'stream.test', 'Transfer-Encoding': 'chunked' } },
        patternStream(SIZE),
      );
      assert.equal(status, 200);
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      const echo = JSON.parse(Buffer.concat(chunks).toString()) as EchoReport;
      assert.equal(echo.bodyBytes, SIZE);
      assert.equal(echo.bodySha256, await patternSha(SIZE));
      const names = echo.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      assert.ok(names.includes('transfer-encoding'), 'forwarded chunked');
      assert.ok(!names.includes('content-length'));
    } finally {
      clearInterval(sampler);
    }
    assert.ok(peak - rssBefore < 100 * MB, `RSS grew by ${Math.round((peak - rssBefore) / MB)} MB`);
  });
});

void describe('Expect: 100-continue', () => {
  function expectRequest(host: string, path: string, body: Buffer) {
    return new Promise<{ status: number; continued: boolean; body: string }>((resolve, reject) => {
      let continued = false;
      const req = https.request({
        host: '127.0.0.1',
        port: fx.proxy.addresses.https,
        servername: host,
        ca: fx.runCa.certPem,
        method: 'POST',
        path,
        agent: false,
        headers: { Host: host, Expect: '100-continue', 'Content-Length': body.length },
      });
      req.on('continue', () => {
        continued = true;
        req.end(body);
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, continued, body: Buffer.concat(chunks).toString() }),
        );
      });
      req.on('error', reject);
      req.flushHeaders();
    });
  }

  void test('an allowed upload gets the upstream’s 100 Continue, then the body is forwarded', async () => {
    const reply = await expectRequest('stream.test', '/expect', Buffer.from('payload'));
    assert.equal(reply.status, 200);
    assert.ok(reply.continued);
    assert.equal((JSON.parse(reply.body) as EchoReport).bodyBytes, 7);
  });

  void test('a blocked upload gets the 403 straight away, without 100 Continue', async () => {
    const before = upstream.received.length;
    const reply = await expectRequest('blocked.test', '/expect', Buffer.from('payload'));
    assert.equal(reply.status, 403);
    assert.equal(reply.continued, false);
    assert.equal(upstream.received.length, before);
  });

  void test('an upstream that refuses the expectation is relayed', async () => {
    const reply = await expectRequest('stream.test', '/expect-refuse', Buffer.from('payload'));
    assert.equal(reply.status, 417);
    assert.equal(reply.continued, false);
  });
});

void describe('WebSocket', () => {
  function open(host: string, path: string) {
    return new Promise<{ ws: WebSocket | null; status: number; body: string }>((resolve) => {
      // ws passes TLS options through to tls.connect; its typings do not list servername.
      const options = { headers: { Host: host }, servername: host, ca: fx.runCa.certPem } as WebSocket.ClientOptions;
      const ws = new WebSocket(`wss://127.0.0.1:${fx.proxy.addresses.https}${path}`, options);
      ws.on('open', () => resolve({ ws, status: 101, body: '' }));
      ws.on('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ ws: null, status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      });
      ws.on('error', () => resolve({ ws: null, status: 0, body: '' }));
    });
  }

  void test('an allowed host/path upgrades and frames flow both ways', async () => {
    const { ws, status } = await open('ws.test', '/ws');
    assert.equal(status, 101);
    const reply = await new Promise<string>((resolve) => {
      ws!.on('message', (data) => resolve((data as Buffer).toString()));
      ws!.send('ping');
    });
    assert.equal(reply, 'echo:ping');
    ws!.close();
    assert.ok(fx.log.events.map(formatTextLine).includes('ALLOWED GET https://ws.test/ws -> 101'));
  });

  void test('a blocked host is refused with 403 before any upstream contact', async () => {
    const before = upstream.received.length;
    const { status, body } = await open('blocked.test', '/ws');
    assert.equal(status, 403);
    assert.equal((JSON.parse(body) as { code: string }).code, 'host_not_allowed');
    assert.equal(upstream.received.length, before);
  });

  void test('a path outside the entry is refused', async () => {
    const { status, body } = await open('ws.test', '/other');
    assert.equal(status, 403);
    assert.equal((JSON.parse(body) as { code: string }).code, 'path_not_allowed');
  });

  void test('an upgrade on a method other than GET is refused', async () => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port: fx.proxy.addresses.https,
      servername: 'stream.test',
      ca: fx.runCa.certPem,
    });
    const reply = await new Promise<string>((resolve) => {
      let out = '';
      socket.on('secureConnect', () =>
        socket.write(
          'POST /ws HTTP/1.1\r\nHost: stream.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n',
        ),
      );
      socket.on('data', (d: Buffer) => (out += d.toString()));
      socket.on('close', () => resolve(out));
    });
    assert.match(reply, /^HTTP\/1\.1 403 /);
    assert.match(reply, /method_not_allowed/);
  });
});
