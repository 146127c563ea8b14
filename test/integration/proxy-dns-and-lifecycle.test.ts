import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { after, before, test } from 'node:test';
import dnsPacket from 'dns-packet';
import { generateRunCa } from '../../src/cli/session/ca.js';
import { formatTextLine } from '../../src/proxy/log/network-log.js';
import { startProxy } from '../../src/proxy/start.js';
import { startProxyFixture, type ProxyFixture } from '../helpers/upstream.js';

/**
 * startProxy brings up the DNS responder with the HTTP listeners, resolves only once all of them accept, logs
 * every query, and close() releases every port. (The responder's own behaviour is proved in dns-responder.test.ts.)
 */

let fx: ProxyFixture;

before(async () => {
  fx = await startProxyFixture({ allowlist: { domains: [] }, run: { id: 'run-42', policySha256: 'ab'.repeat(32) } });
});

after(() => fx.close());

function randomName(): string {
  return `r${Math.random().toString(36).slice(2)}.example.invalid`;
}

function udpQuery(port: number, packet: Buffer, timeoutMs = 1000): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    const timer = setTimeout(() => {
      socket.close();
      resolve(null);
    }, timeoutMs);
    socket.on('message', (msg) => {
      clearTimeout(timer);
      socket.close();
      resolve(msg);
    });
    socket.send(packet, port, '127.0.0.1');
  });
}

function tcpQuery(port: number, packet: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(packet.length);
      socket.write(Buffer.concat([len, packet]));
    });
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        socket.destroy();
        resolve(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      }
    });
    socket.on('error', reject);
  });
}

function query(name: string, type: 'A' | 'AAAA' | 'TXT'): Buffer {
  return dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });
}

function rcode(packet: dnsPacket.DecodedPacket): number {
  return (packet.flags ?? 0) & 0xf;
}

function lines(): string[] {
  return fx.log.events.map(formatTextLine);
}

void test('the log starts with the TASK START line before anything else', () => {
  const first = fx.log.events[0]!;
  assert.equal(first.event, 'start');
  assert.match(formatTextLine(first), /^=== TASK START \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ===$/);
});

void test('every listener accepts connections as soon as startProxy resolves', async () => {
  const { http, https, dns } = fx.proxy.addresses;
  for (const port of [http, https, dns]) {
    assert.ok(port > 0);
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve();
      });
      s.on('error', reject);
    });
  }
});

void test('an A query for any name over UDP answers the sandbox address and is logged', async () => {
  const name = randomName();
  const reply = await udpQuery(fx.proxy.addresses.dns, query(name, 'A'));
  const decoded = dnsPacket.decode(reply!);
  assert.equal(rcode(decoded), 0, 'NOERROR');
  assert.deepEqual(
    decoded.answers?.map((a) => (a as { data: unknown }).data),
    ['10.199.1.100'],
  );
  assert.ok(lines().includes(`DNS A ${name} -> 10.199.1.100`));
});

void test('AAAA and TXT (over TCP) answer NOERROR with no records and are logged', async () => {
  const v6 = randomName();
  const aaaa = dnsPacket.decode((await udpQuery(fx.proxy.addresses.dns, query(v6, 'AAAA')))!);
  assert.equal(rcode(aaaa), 0, 'NOERROR');
  assert.equal(aaaa.answers?.length ?? 0, 0);
  const txtName = randomName();
  const txt = dnsPacket.decode(await tcpQuery(fx.proxy.addresses.dns, query(txtName, 'TXT')));
  assert.equal(rcode(txt), 0, 'NOERROR');
  assert.equal(txt.answers?.length ?? 0, 0);
  assert.ok(lines().includes(`DNS AAAA ${v6} -> NOERROR (no records)`));
  assert.ok(lines().includes(`DNS TXT ${txtName} -> NOERROR (no records)`));
  const jsonl = fx.log.events.find((e) => e.event === 'dns' && e.name === txtName);
  assert.equal(jsonl?.event === 'dns' && jsonl.transport, 'tcp');
});

void test('a malformed packet gets no answer and the responder keeps answering', async () => {
  assert.equal(await udpQuery(fx.proxy.addresses.dns, Buffer.from([1, 2, 3]), 300), null);
  const reply = await udpQuery(fx.proxy.addresses.dns, query(randomName(), 'A'));
  assert.ok(reply);
});

void test('close() releases every port', async () => {
  const other = await startProxyFixture({ allowlist: { domains: [] } });
  const { http, https } = other.proxy.addresses;
  await other.close();
  for (const port of [http, https]) {
    await assert.rejects(
      new Promise<void>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.destroy();
          resolve();
        });
        s.on('error', reject);
      }),
      /ECONNREFUSED/,
    );
  }
});

void test('startProxy rejects (instead of half-starting) when a port is taken', async () => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const taken = (blocker.address() as net.AddressInfo).port;
  try {
    await assert.rejects(
      startProxy({
        allowlist: { domains: [], url_prefixes: [] },
        ca: await generateRunCa(),
        sandboxAddress: '10.199.1.100',
        listen: { host: '127.0.0.1', http: 0, https: taken, dns: 0 },
        upstream: {},
      }),
      /EADDRINUSE/,
    );
  } finally {
    blocker.close();
  }
});

void test('leaves are minted at startup for exact names and one per `*.suffix` pattern; other globs and IPs get none', async () => {
  const listed = await startProxyFixture({
    allowlist: {
      domains: ['a.test', '*.wild.test', '10.1.2.3', 'A.test.', '*.com'],
      url_prefixes: [{ host: 'b.test', path: '/x' }, { host: 'api-?.test' }],
    },
  });
  try {
    // a.test, b.test and *.wild.test; `*.com` would be a wildcard across a TLD and is never minted.
    const deadline = Date.now() + 5000;
    while (listed.proxy.stats().leavesMinted < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(listed.proxy.stats(), { leafCacheSize: 3, leavesMinted: 3 });
  } finally {
    await listed.close();
  }
});
