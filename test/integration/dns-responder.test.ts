import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { after, test } from 'node:test';
import dnsPacket from 'dns-packet';
import { startDnsResponder, type DnsQueryEvent, type DnsResponder } from '../../src/proxy/dns/responder.js';

const LOOPBACK = '127.0.0.1';
const PROXY_IP = '10.199.7.100';
const NO_REPLY_WAIT_MS = 250;

const started: DnsResponder[] = [];
after(async () => {
  await Promise.all(started.map((r) => r.close()));
});

async function responder(extra: Partial<Parameters<typeof startDnsResponder>[0]> = {}) {
  const events: DnsQueryEvent[] = [];
  const r = await startDnsResponder({
    host: LOOPBACK,
    port: 0,
    answerAddress: PROXY_IP,
    onQuery: (e) => events.push(e),
    ...extra,
  });
  started.push(r);
  return { r, events };
}

function randomName(): string {
  const labels = Array.from({ length: 1 + (randomBytes(1)[0]! % 4) }, () => randomBytes(6).toString('hex'));
  return `${labels.join('.')}.example`;
}

function query(name: string, type: dnsPacket.RecordType = 'A', id = randomBytes(2).readUInt16BE(0)): Buffer {
  return dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] });
}

/** The reply to one datagram, or null when none came within the wait. */
async function udpExchange(port: number, packet: Uint8Array, waitMs = 2000): Promise<Buffer | null> {
  const socket = dgram.createSocket('udp4');
  try {
    const reply = once(socket, 'message').then(([msg]) => msg as Buffer);
    socket.send(packet, port, LOOPBACK);
    const timeout = new Promise<null>((resolve) => setTimeout(() => resolve(null), waitMs).unref());
    return await Promise.race([reply, timeout]);
  } finally {
    socket.close();
  }
}

function frame(packet: Uint8Array): Buffer {
  const out = Buffer.alloc(2 + packet.length);
  out.writeUInt16BE(packet.length, 0);
  out.set(packet, 2);
  return out;
}

/** Reads length-framed DNS messages off a TCP socket. */
class TcpDnsClient {
  readonly socket: net.Socket;
  private buffered = Buffer.alloc(0);
  private readonly messages: Buffer[] = [];
  private waiters: (() => void)[] = [];
  closed = false;

  constructor(port: number) {
    this.socket = net.connect(port, LOOPBACK);
    this.socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      while (this.buffered.length >= 2 && this.buffered.length >= 2 + this.buffered.readUInt16BE(0)) {
        const len = this.buffered.readUInt16BE(0);
        this.messages.push(this.buffered.subarray(2, 2 + len));
        this.buffered = this.buffered.subarray(2 + len);
      }
      this.wake();
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  async connected(): Promise<void> {
    if (!this.socket.connecting) return;
    await once(this.socket, 'connect');
  }

  /** The next `count` messages, or fewer if the server closes the connection first. */
  async read(count: number, waitMs = 3000): Promise<Buffer[]> {
    const deadline = Date.now() + waitMs;
    while (this.messages.length < count && !this.closed && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, deadline - Date.now()).unref();
      });
    }
    return this.messages.splice(0, count);
  }

  async untilClosed(waitMs = 3000): Promise<boolean> {
    await this.read(Number.MAX_SAFE_INTEGER, waitMs);
    return this.closed;
  }

  end(): void {
    this.socket.destroy();
  }
}

function addressesIn(reply: Buffer): unknown[] {
  return (dnsPacket.decode(reply).answers ?? []).map((a) => ('data' in a ? a.data : undefined));
}

void test('UDP: every A query, whatever the name, is answered with the proxy address', async () => {
  const { r, events } = await responder();
  for (let i = 0; i < 20; i++) {
    const name = randomName();
    const reply = await udpExchange(r.port, query(name, 'A', i));
    assert.ok(reply, name);
    const decoded = dnsPacket.decode(reply);
    assert.equal(decoded.id, i);
    assert.deepEqual(decoded.questions, [{ type: 'A', name, class: 'IN' }]);
    assert.deepEqual(addressesIn(reply), [PROXY_IP]);
    const [record] = decoded.answers ?? [];
    assert.equal(record && 'ttl' in record ? record.ttl : undefined, 60);
  }
  // Even names that a forwarding resolver would know: nothing is looked up.
  for (const name of ['localhost', 'github.com', '169.254.169.254.nip.io', 'metadata.google.internal']) {
    assert.deepEqual(addressesIn((await udpExchange(r.port, query(name)))!), [PROXY_IP], name);
  }
  assert.equal(events.length, 24);
  assert.ok(events.every((e) => e.transport === 'udp' && e.type === 'A' && e.answer === PROXY_IP));
});

void test('UDP: AAAA, TXT, ANY and unknown types get an empty NOERROR answer', async () => {
  const { r, events } = await responder();
  for (const type of ['AAAA', 'TXT', 'ANY', 'MX', 'SRV', 'CAA'] as dnsPacket.RecordType[]) {
    const name = randomName();
    const reply = await udpExchange(r.port, query(name, type));
    assert.ok(reply, type);
    const decoded = dnsPacket.decode(reply);
    assert.equal((decoded.flags ?? -1) & 0xf, 0, `${type}: rcode NOERROR`);
    assert.equal(decoded.answers?.length, 0, type);
    assert.deepEqual(decoded.questions, [{ type, name, class: 'IN' }]);
  }
  assert.deepEqual(
    events.map((e) => [e.type, e.answer]),
    [
      ['AAAA', null],
      ['TXT', null],
      ['ANY', null],
      ['MX', null],
      ['SRV', null],
      ['TYPE257', null],
    ],
  );
});

void test('UDP and TCP: the longest legal name is answered; a longer one is not', async () => {
  const { r } = await responder();
  const l63 = 'a'.repeat(63);
  const longest = `${l63}.${l63}.${l63}.${'b'.repeat(61)}`; // 255 octets on the wire
  const reply = await udpExchange(r.port, query(longest));
  assert.deepEqual(addressesIn(reply!), [PROXY_IP]);
  const tcp = new TcpDnsClient(r.port);
  tcp.socket.write(frame(query(longest, 'AAAA')));
  const [viaTcp] = await tcp.read(1);
  assert.equal(dnsPacket.decode(viaTcp!).questions?.[0]?.name, longest);
  tcp.end();

  const tooLong = Buffer.concat([
    Buffer.from('123401000001000000000000', 'hex'),
    Buffer.from(('3f' + '61'.repeat(63)).repeat(4) + '00' + '00010001', 'hex'),
  ]);
  assert.equal(await udpExchange(r.port, tooLong, NO_REPLY_WAIT_MS), null);
});

void test('UDP: malformed packets get no reply and the responder keeps answering', async () => {
  const { r, events } = await responder({ maxMessageBytes: 1024 });
  const valid = query('still.alive.example');
  const malformed = [
    Buffer.alloc(0),
    Buffer.from('1234', 'hex'),
    Buffer.from('123401000001000000000000', 'hex'),
    Buffer.from('123401000001000000000000c00c00010001', 'hex'), // compression pointer
    Buffer.from('12340100000100000000000009616263', 'hex'), // label past the end
    (() => {
      const response = Buffer.from(valid);
      response[2]! |= 0x80; // QR: a response must never be answered (no reflection loop)
      return response;
    })(),
    Buffer.concat([valid, Buffer.alloc(2000)]), // over maxMessageBytes
    (() => {
      const noise = randomBytes(512);
      noise[2]! &= 0x7f;
      noise[12] = 0x80; // a name starting with a reserved label type
      return noise;
    })(),
  ];
  for (const packet of malformed) {
    assert.equal(await udpExchange(r.port, packet, NO_REPLY_WAIT_MS), null, packet.toString('hex').slice(0, 40));
  }
  assert.deepEqual(addressesIn((await udpExchange(r.port, valid))!), [PROXY_IP]);
  assert.equal(events.length, 1);
});

void test('TCP: several queries on one connection, pipelined or split across writes, are all answered in order', async () => {
  const { r, events } = await responder();
  const names = Array.from({ length: 10 }, randomName);
  const client = new TcpDnsClient(r.port);
  await client.connected();
  client.socket.write(Buffer.concat(names.map((n, i) => frame(query(n, i % 2 ? 'AAAA' : 'A', i)))));
  const replies = await client.read(10);
  assert.equal(replies.length, 10);
  replies.forEach((reply, i) => {
    const d = dnsPacket.decode(reply);
    assert.equal(d.id, i);
    assert.equal(d.questions?.[0]?.name, names[i]);
    assert.deepEqual(addressesIn(reply), i % 2 ? [] : [PROXY_IP]);
  });

  // One query dribbled a byte at a time, length prefix included.
  const dribbled = frame(query('slow.example', 'A', 777));
  for (const byte of dribbled) {
    client.socket.write(Buffer.from([byte]));
    await new Promise((resolve) => setImmediate(resolve));
  }
  const [slow] = await client.read(1);
  assert.equal(dnsPacket.decode(slow!).id, 777);
  assert.equal(events.filter((e) => e.transport === 'tcp').length, 11);
  client.end();
});

void test('TCP: a malformed message is skipped and the connection keeps working', async () => {
  const { r } = await responder();
  const client = new TcpDnsClient(r.port);
  client.socket.write(
    Buffer.concat([frame(Buffer.from('0102', 'hex')), frame(randomBytes(40)), frame(query('after.example', 'A', 9))]),
  );
  const replies = await client.read(1);
  assert.equal(dnsPacket.decode(replies[0]!).id, 9);
  assert.equal(client.closed, false);
  client.end();
});

void test('TCP: a message longer than the limit closes the connection', async () => {
  const { r } = await responder({ maxMessageBytes: 512 });
  const client = new TcpDnsClient(r.port);
  const header = Buffer.alloc(2);
  header.writeUInt16BE(513, 0);
  client.socket.write(header);
  assert.equal(await client.untilClosed(), true);
});

void test('TCP: an idle connection is closed after the idle timeout', async () => {
  const { r } = await responder({ tcpIdleTimeoutMs: 200 });
  const client = new TcpDnsClient(r.port);
  await client.connected();
  const opened = Date.now();
  assert.equal(await client.untilClosed(3000), true);
  const elapsed = Date.now() - opened;
  assert.ok(elapsed >= 150 && elapsed < 2000, `closed after ${elapsed} ms`);
});

void test('TCP: connections beyond the cap are refused, and a freed slot is usable again', async () => {
  const { r } = await responder({ maxTcpConnections: 4 });
  const held = Array.from({ length: 4 }, () => new TcpDnsClient(r.port));
  for (const c of held) {
    c.socket.write(frame(query('held.example')));
    assert.equal((await c.read(1)).length, 1);
  }
  const extra = new TcpDnsClient(r.port);
  extra.socket.write(frame(query('extra.example')));
  assert.deepEqual(await extra.read(1, 1000), []);
  assert.equal(extra.closed, true);

  held[0]!.end();
  await new Promise((resolve) => setTimeout(resolve, 100));
  const again = new TcpDnsClient(r.port);
  again.socket.write(frame(query('again.example')));
  assert.equal((await again.read(1)).length, 1);
  for (const c of [...held, again]) c.end();
});

void test('TCP: 50 concurrent connections are all answered', async () => {
  const { r } = await responder();
  const clients = Array.from({ length: 50 }, () => new TcpDnsClient(r.port));
  const results = await Promise.all(
    clients.map(async (c, i) => {
      c.socket.write(Buffer.concat([frame(query(`c${i}.example`, 'A', i)), frame(query(`c${i}.example`, 'TXT', i))]));
      return c.read(2);
    }),
  );
  results.forEach((replies, i) => {
    assert.equal(replies.length, 2, `connection ${i}`);
    assert.deepEqual(addressesIn(replies[0]!), [PROXY_IP]);
    assert.equal(dnsPacket.decode(replies[1]!).answers?.length, 0);
  });
  for (const c of clients) c.end();
});

void test('port 0 binds UDP and TCP on one port; close releases both', async () => {
  const a = await startDnsResponder({ host: LOOPBACK, port: 0, answerAddress: PROXY_IP });
  const b = await startDnsResponder({ host: LOOPBACK, port: 0, answerAddress: PROXY_IP });
  assert.notEqual(a.port, b.port);
  const client = new TcpDnsClient(a.port);
  client.socket.write(frame(query('same.port.example')));
  assert.equal((await client.read(1)).length, 1);
  client.end();
  const port = a.port;
  await a.close();
  await b.close();
  const again = await startDnsResponder({ host: LOOPBACK, port, answerAddress: PROXY_IP });
  assert.equal(again.port, port);
  await again.close();
});

void test('an explicit port that is taken is an error, not a silent move', async () => {
  const { r } = await responder();
  await assert.rejects(startDnsResponder({ host: LOOPBACK, port: r.port, answerAddress: PROXY_IP }), {
    code: 'EADDRINUSE',
  });
});

void test('the answer address must be IPv4', async () => {
  await assert.rejects(startDnsResponder({ host: LOOPBACK, port: 0, answerAddress: '::1' }), /not an IPv4 address/);
  await assert.rejects(startDnsResponder({ host: LOOPBACK, port: 0, answerAddress: '10.0.0' }), /not an IPv4 address/);
});

void test('a query log sink that throws does not stop answers', async () => {
  const errors: Error[] = [];
  const { r } = await responder({
    onQuery: () => {
      throw new Error('log sink full');
    },
    onError: (e) => errors.push(e),
  });
  assert.deepEqual(addressesIn((await udpExchange(r.port, query('x.example')))!), [PROXY_IP]);
  assert.equal(errors[0]?.message, 'log sink full');
});
