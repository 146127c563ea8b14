import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import dnsPacket from 'dns-packet';
import { startDnsResponder, type DnsResponder } from '../../src/proxy/dns/responder.js';
import { EDNS_OPT } from '../helpers/dns-query.js';

/**
 * Bounded fuzzing of the sandbox's resolver: the one proxy service the sandbox can reach without TLS or HTTP
 * framing in front. Every run draws fresh inputs; counts and wall time are capped so the suite stays fast.
 */

const LOOPBACK = '127.0.0.1';
const PROXY_IP = '10.199.9.100';
const UDP_PACKETS = 20_000;
const TCP_CONNECTIONS = 300;
const TIME_BUDGET_MS = 8_000;
const MAX_TCP = 8;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let responder: DnsResponder;
const errors: Error[] = [];
let answered = 0;

before(async () => {
  responder = await startDnsResponder({
    host: LOOPBACK,
    port: 0,
    answerAddress: PROXY_IP,
    maxTcpConnections: MAX_TCP,
    tcpIdleTimeoutMs: 1_000,
    onQuery: () => answered++,
    onError: (e) => errors.push(e),
  });
});
after(() => responder.close());

const NAMES = ['example.com', 'a.b.c.d.e.f.example', 'x', 'xn--bcher-kva.example', 'localhost'];
const TYPES: dnsPacket.RecordType[] = ['A', 'AAAA', 'TXT', 'MX', 'SRV', 'CNAME', 'NS', 'PTR'];

function validQuery(id = randomInt(0x10000)): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: randomInt(2) ? dnsPacket.RECURSION_DESIRED : 0,
    questions: [{ type: TYPES[randomInt(TYPES.length)]!, name: NAMES[randomInt(NAMES.length)]! }],
    additionals: randomInt(2) ? [EDNS_OPT] : [],
  });
}

/** A valid query damaged the ways fuzzers damage things: flipped bits, overwritten bytes, cuts and tails. */
function mutatedQuery(): Buffer {
  const packet = Buffer.from(validQuery());
  const mutations = 1 + randomInt(4);
  let out: Buffer = packet;
  for (let m = 0; m < mutations; m++) {
    switch (randomInt(6)) {
      case 0:
        out[randomInt(out.length)]! ^= 1 << randomInt(8);
        break;
      case 1:
        out[randomInt(out.length)] = [0x00, 0xff, 0xc0, 0x3f, 0x40, 0x80][randomInt(6)]!;
        break;
      case 2:
        out = out.subarray(0, randomInt(out.length));
        break;
      case 3:
        out = Buffer.concat([out, randomBytes(randomInt(64))]);
        break;
      case 4: {
        const at = 4 + 2 * randomInt(4); // a header count
        if (out.length >= at + 2) out.writeUInt16BE(randomInt(0x10000), at);
        break;
      }
      default:
        if (out.length >= 4) out.writeUInt16BE(randomInt(0x10000), 2); // flags: QR, opcode, rcode
    }
    if (out.length === 0) break;
  }
  return Buffer.from(out);
}

function fuzzPacket(): Buffer {
  return randomInt(3) === 0 ? randomBytes(randomInt(700)) : mutatedQuery();
}

async function udpAnswer(packet: Uint8Array): Promise<Buffer | null> {
  const socket = dgram.createSocket('udp4');
  try {
    socket.send(packet, responder.port, LOOPBACK);
    const reply = once(socket, 'message').then(([m]) => m as Buffer);
    return await Promise.race([reply, new Promise<null>((r) => setTimeout(() => r(null), 2000).unref())]);
  } finally {
    socket.close();
  }
}

async function tcpAnswers(packets: Uint8Array[]): Promise<Buffer[]> {
  const socket = net.connect(responder.port, LOOPBACK);
  socket.on('error', () => {});
  const framed = packets.map((p) => {
    const f = Buffer.alloc(2 + p.length);
    f.writeUInt16BE(p.length, 0);
    f.set(p, 2);
    return f;
  });
  socket.write(Buffer.concat(framed));
  let buffered = Buffer.alloc(0);
  const replies: Buffer[] = [];
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 3000);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        replies.push(buffered.subarray(2, 2 + buffered.readUInt16BE(0)));
        buffered = buffered.subarray(2 + buffered.readUInt16BE(0));
      }
      if (replies.length >= packets.length) {
        clearTimeout(timer);
        resolve();
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  socket.destroy();
  return replies;
}

async function assertStillAnswering(): Promise<void> {
  const query = validQuery(4321);
  const viaUdp = await udpAnswer(
    dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'A', name: 'ok.example' }] }),
  );
  assert.ok(viaUdp, 'UDP still answers');
  assert.deepEqual(
    (dnsPacket.decode(viaUdp).answers ?? []).map((a) => ('data' in a ? a.data : null)),
    [PROXY_IP],
  );
  const viaTcp = await tcpAnswers([query]);
  assert.equal(viaTcp.length, 1, 'TCP still answers');
  assert.equal(dnsPacket.decode(viaTcp[0]!).id, 4321);
}

function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

void test('UDP fuzz: random and mutated datagrams never crash it; every reply is a well-formed response', async (t) => {
  const heapBefore = heapAfterGc();
  const client = dgram.createSocket('udp4');
  const sentIds = new Set<number>();
  let replies = 0;
  let malformedReplies = 0;
  client.on('message', (reply: Buffer) => {
    replies++;
    try {
      const decoded = dnsPacket.decode(reply);
      if (decoded.type !== 'response' || !sentIds.has(decoded.id ?? -1)) malformedReplies++;
    } catch {
      malformedReplies++;
    }
  });
  client.bind(0, LOOPBACK);
  await once(client, 'listening');
  const started = Date.now();
  let sent = 0;
  try {
    while (sent < UDP_PACKETS && Date.now() - started < TIME_BUDGET_MS) {
      const packet = fuzzPacket();
      if (packet.length >= 2) sentIds.add(packet.readUInt16BE(0));
      await new Promise<void>((resolve) => client.send(packet, responder.port, LOOPBACK, () => resolve()));
      sent++;
      // Let the responder drain its queue now and then so loopback drops do not hide answers.
      if (sent % 200 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  } finally {
    client.close();
  }

  assert.ok(sent >= 1000, `sent ${sent}`);
  assert.ok(replies > 0, 'some mutated queries are still queries and must be answered');
  assert.equal(malformedReplies, 0);
  assert.deepEqual(errors, []);
  await assertStillAnswering();
  const growth = heapAfterGc() - heapBefore;
  t.diagnostic(
    `${sent} datagrams in ${Date.now() - started} ms, ${replies} answered, heap +${(growth / 1048576).toFixed(2)} MiB`,
  );
  assert.ok(growth < 8 * 1024 * 1024, `heap grew ${(growth / 1048576).toFixed(1)} MiB over ${sent} packets`);
});

void test('TCP fuzz: garbage streams, bad frames and abrupt closes leak neither crashes nor connection slots', async (t) => {
  const heapBefore = heapAfterGc();
  const started = Date.now();
  let connections = 0;
  while (connections < TCP_CONNECTIONS && Date.now() - started < TIME_BUDGET_MS) {
    // A few at a time, below the cap, each doing something different and then vanishing.
    await Promise.all(
      Array.from({ length: MAX_TCP - 2 }, async () => {
        const socket = net.connect(responder.port, LOOPBACK);
        socket.on('error', () => {});
        await once(socket, 'connect').catch(() => {});
        const packets = Array.from({ length: 1 + randomInt(5) }, fuzzPacket);
        switch (randomInt(4)) {
          case 0: // unframed garbage
            socket.write(randomBytes(randomInt(3000)));
            break;
          case 1: {
            // plausible frames around fuzzed packets, some with lying lengths
            for (const p of packets) {
              const len = randomInt(4) === 0 ? randomInt(0x10000) : p.length;
              const f = Buffer.alloc(2);
              f.writeUInt16BE(len, 0);
              socket.write(Buffer.concat([f, p]));
            }
            break;
          }
          case 2: // half a frame, then gone
            socket.write(Buffer.from([0x00, 0x40, 0x12]));
            break;
          default: {
            // a valid query, split at a random point
            const q = validQuery();
            const f = Buffer.alloc(2 + q.length);
            f.writeUInt16BE(q.length, 0);
            f.set(q, 2);
            const cut = randomInt(f.length);
            socket.write(f.subarray(0, cut));
            socket.write(f.subarray(cut));
          }
        }
        await new Promise((resolve) => setTimeout(resolve, randomInt(5)));
        socket.destroy();
        connections++;
      }),
    );
  }
  assert.ok(connections >= 50, `made ${connections} connections`);
  await new Promise((resolve) => setTimeout(resolve, 200));

  // Every slot must have been released: the full cap of connections is served at once.
  const held = await Promise.all(Array.from({ length: MAX_TCP }, () => tcpAnswers([validQuery(7)])));
  held.forEach((replies, i) => assert.equal(replies.length, 1, `connection ${i} of ${MAX_TCP}`));
  await assertStillAnswering();
  assert.deepEqual(errors, []);
  const growth = heapAfterGc() - heapBefore;
  t.diagnostic(`${connections} connections in ${Date.now() - started} ms, heap +${(growth / 1048576).toFixed(2)} MiB`);
  assert.ok(growth < 8 * 1024 * 1024, `heap grew ${(growth / 1048576).toFixed(1)} MiB over ${connections} connections`);
});

void test('a client that pipelines queries and never reads is throttled instead of buffered', async (t) => {
  const socket = net.connect(responder.port, LOOPBACK);
  socket.on('error', () => {});
  await once(socket, 'connect');
  const q = validQuery(99);
  const frame = Buffer.alloc(2 + q.length);
  frame.writeUInt16BE(q.length, 0);
  frame.set(q, 2);
  const batch = Buffer.concat(Array.from({ length: 1000 }, () => frame));
  const heapBefore = heapAfterGc();
  // Write only as fast as the kernel accepts; once the responder stops reading, the kernel stops accepting.
  let accepted = 0;
  const deadline = Date.now() + 1500;
  while (Date.now() < deadline) {
    if (!socket.write(batch)) {
      const drained = await Promise.race([
        once(socket, 'drain').then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 300)),
      ]);
      if (!drained) break;
    }
    accepted += batch.length;
  }
  const heapGrowth = heapAfterGc() - heapBefore;
  socket.destroy();
  t.diagnostic(
    `accepted ${(accepted / 1048576).toFixed(2)} MiB unread, heap +${(heapGrowth / 1048576).toFixed(2)} MiB`,
  );
  // A responder that kept reading would take queries as fast as it answers them, tens of MB a second.
  assert.ok(accepted < 32 * 1024 * 1024, `the responder took ${(accepted / 1048576).toFixed(1)} MiB unread`);
  assert.ok(heapGrowth < 16 * 1024 * 1024, `heap grew ${(heapGrowth / 1048576).toFixed(1)} MiB`);
  await assertStillAnswering();
});
