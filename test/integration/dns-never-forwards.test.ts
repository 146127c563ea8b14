import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import dns from 'node:dns';
import { once } from 'node:events';
import { syncBuiltinESMExports } from 'node:module';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import type { DnsResponder } from '../../src/proxy/dns/responder.js';
import { EDNS_OPT } from '../helpers/dns-query.js';

/**
 * The sandbox's DNS responder never forwards a query: whatever is asked, nothing leaves the proxy towards any
 * resolver, so DNS cannot be a tunnel out of the sandbox. Proven by behaviour, not by reading the source: every way
 * this process could reach a resolver is pointed at a recording resolver on loopback, which must see zero packets
 * while fast-check throws every kind of query at the responder over UDP and TCP.
 *
 * The ways out that are pointed at the recorder:
 * - any datagram or TCP connection from a socket of this process to anyone but the client that asked (the
 *   responder's own socket reused as a forwarder, or a new socket to a resolver address read from anywhere);
 * - node's dns module: its default resolver, every `new Resolver()`, and `lookup` (getaddrinfo, which would read
 *   /etc/resolv.conf) are all redirected to the recorder, so a query through them arrives there too.
 */

const LOOPBACK = '127.0.0.1';

/** Sockets the test itself talks through (the recorder's too): the responder may answer askers and nobody else. */
const askers = new Set<dgram.Socket | net.Socket>();
const askerPorts = new Set<number>();

interface Recorder {
  port: number;
  packets: number;
  close(): Promise<void>;
}

/** A resolver that answers nothing and counts everything that reaches it, over UDP and TCP. */
async function startRecorder(): Promise<Recorder> {
  const udp = dgram.createSocket('udp4');
  // Its REFUSED answers go where they are addressed, past the trap.
  askers.add(udp);
  udp.bind(0, LOOPBACK);
  await once(udp, 'listening');
  const port = udp.address().port;
  const tcp = net.createServer();
  tcp.listen(port, LOOPBACK);
  await once(tcp, 'listening');
  const connections = new Set<net.Socket>();
  const recorder: Recorder = {
    port,
    packets: 0,
    close: () => {
      for (const c of connections) c.destroy();
      return Promise.all([
        new Promise<void>((r) => udp.close(() => r())),
        new Promise<void>((r) => tcp.close(() => r())),
      ]).then(() => undefined);
    },
  };
  udp.on('message', (msg, peer) => {
    recorder.packets++;
    // REFUSED, so a resolver that forwarded here gives up at once instead of retrying for seconds.
    if (msg.length < 12) return;
    const refused = Buffer.from(msg);
    refused[2] = refused[2]! | 0x80;
    refused[3] = (refused[3]! & 0xf0) | 5;
    udp.send(refused, peer.port, peer.address);
  });
  tcp.on('connection', (socket) => {
    connections.add(socket);
    recorder.packets++;
    socket.on('data', () => recorder.packets++);
    socket.on('error', () => undefined);
  });
  return recorder;
}

let recorder: Recorder;
let responder: DnsResponder;
const restore: Array<() => void> = [];

function patch<T extends object, K extends keyof T>(target: T, key: K, replacement: T[K]): void {
  const original = target[key];
  target[key] = replacement;
  restore.push(() => (target[key] = original));
}

type AnyMethod = (this: unknown, ...args: unknown[]) => unknown;
const original = (prototype: object, name: string) => Reflect.get(prototype, name) as AnyMethod;

/** Points every way out of this process at the recorder (see the header). */
function trapEgress(): void {
  const sendOriginal = original(dgram.Socket.prototype, 'send');
  patch(dgram.Socket.prototype, 'send', function (this: dgram.Socket, ...args: unknown[]) {
    if (askers.has(this)) return sendOriginal.apply(this, args);
    // send(msg, [offset, length,] port, address, cb): find the destination port.
    const portAt = typeof args[1] === 'number' && typeof args[2] === 'number' && typeof args[3] === 'number' ? 3 : 1;
    const port = args[portAt];
    const answersAsker = typeof port === 'number' && askerPorts.has(port) && args[portAt + 1] === LOOPBACK;
    if (answersAsker) return sendOriginal.apply(this, args);
    const callback = args.find((a) => typeof a === 'function');
    return sendOriginal.apply(this, [args[0], recorder.port, LOOPBACK, callback]);
  } as typeof dgram.Socket.prototype.send);
  const dgramConnect = original(dgram.Socket.prototype, 'connect');
  patch(dgram.Socket.prototype, 'connect', function (this: dgram.Socket, ...args: unknown[]) {
    const callback = args.find((a) => typeof a === 'function');
    return dgramConnect.apply(this, [recorder.port, LOOPBACK, callback]);
  });
  const netConnect = original(net.Socket.prototype, 'connect');
  patch(net.Socket.prototype, 'connect', function (this: net.Socket, ...args: unknown[]) {
    if (askers.has(this)) return netConnect.apply(this, args);
    const callback = args.find((a) => typeof a === 'function');
    return netConnect.apply(this, [{ port: recorder.port, host: LOOPBACK }, callback]);
  } as typeof net.Socket.prototype.connect);

  const servers = [`${LOOPBACK}:${recorder.port}`];
  const defaultServers = dns.getServers();
  dns.setServers(servers);
  restore.push(() => dns.setServers(defaultServers));
  class RecordedResolver extends dns.Resolver {
    constructor(options?: dns.ResolverOptions) {
      super(options);
      this.setServers(servers);
    }
  }
  class RecordedPromisesResolver extends dns.promises.Resolver {
    constructor(options?: dns.ResolverOptions) {
      super(options);
      this.setServers(servers);
    }
  }
  patch(dns, 'Resolver', RecordedResolver);
  patch(dns.promises, 'Resolver', RecordedPromisesResolver);
  // getaddrinfo reads /etc/resolv.conf, out of reach: names are looked up through the (recorded) default resolver.
  // IP literals are answered at once, as node's own lookup does (dgram looks up every address it sends to).
  type LookupCallback = (error: Error | null, address?: string | dns.LookupAddress[], family?: number) => void;
  const refusedLookup = () => Object.assign(new Error('lookup refused by the test'), { code: 'ENOTFOUND' });
  patch(dns, 'lookup', ((hostname: string, options: unknown, callback?: LookupCallback) => {
    const done = (typeof options === 'function' ? options : callback) as LookupCallback;
    const all = typeof options === 'object' && options !== null && (options as dns.LookupOptions).all === true;
    const family = net.isIP(hostname);
    if (family) {
      process.nextTick(() => (all ? done(null, [{ address: hostname, family }]) : done(null, hostname, family)));
      return;
    }
    dns.resolve4(hostname, () => done(refusedLookup()));
  }) as typeof dns.lookup);
  patch(dns.promises, 'lookup', ((hostname: string, options?: dns.LookupOptions) => {
    const family = net.isIP(hostname);
    if (family) return Promise.resolve(options?.all ? [{ address: hostname, family }] : { address: hostname, family });
    return dns.promises.resolve4(hostname).then(
      () => Promise.reject(refusedLookup()),
      () => Promise.reject(refusedLookup()),
    );
  }) as typeof dns.promises.lookup);
  syncBuiltinESMExports();
}

before(async () => {
  recorder = await startRecorder();
  trapEgress();
  // Imported only now, so whatever it takes from node:dns at load time is already redirected.
  const { startDnsResponder } = await import('../../src/proxy/dns/responder.js');
  responder = await startDnsResponder({ host: LOOPBACK, port: 0, answerAddress: '10.199.7.100' });
});

after(async () => {
  await responder?.close();
  for (const undo of restore.reverse()) undo();
  syncBuiltinESMExports();
  await recorder?.close();
});

async function askUdp(packet: Uint8Array): Promise<Buffer | null> {
  const socket = dgram.createSocket('udp4');
  askers.add(socket);
  socket.bind(0, LOOPBACK);
  await once(socket, 'listening');
  const port = socket.address().port;
  askerPorts.add(port);
  try {
    const reply = once(socket, 'message').then(([m]) => m as Buffer);
    socket.send(packet, responder.port, LOOPBACK);
    const silence = new Promise<null>((r) => setTimeout(() => r(null), 50).unref());
    return await Promise.race([reply, silence]);
  } finally {
    askerPorts.delete(port);
    socket.close();
  }
}

async function askTcp(packet: Uint8Array): Promise<Buffer | null> {
  const socket = new net.Socket();
  askers.add(socket);
  socket.connect(responder.port, LOOPBACK);
  await once(socket, 'connect');
  const framed = Buffer.alloc(2 + packet.length);
  framed.writeUInt16BE(packet.length, 0);
  framed.set(packet, 2);
  try {
    const reply = once(socket, 'data').then(([d]) => d as Buffer);
    socket.write(framed);
    const silence = new Promise<null>((r) => setTimeout(() => r(null), 50).unref());
    return await Promise.race([reply, silence]);
  } finally {
    socket.destroy();
  }
}

const TYPES = ['A', 'AAAA', 'TXT', 'ANY', 'MX', 'NS', 'CNAME', 'PTR', 'SOA', 'SRV', 'CAA', 'DS', 'DNSKEY', 'NULL'];
const label = fc.stringMatching(/^[a-z0-9-]{1,20}$/);
const query = fc.record({
  id: fc.nat(0xffff),
  name: fc.oneof(
    fc.domain(),
    fc.array(label, { minLength: 1, maxLength: 6 }).map((l) => l.join('.')),
  ),
  type: fc.constantFrom(...TYPES),
  klass: fc.constantFrom('IN', 'CH', 'HS', 'ANY'),
  flags: fc.constantFrom(0, dnsPacket.RECURSION_DESIRED, dnsPacket.CHECKING_DISABLED, 0x7800, 0x0110),
  edns: fc.boolean(),
});

type Query = typeof query extends fc.Arbitrary<infer T> ? T : never;

function encode(q: Query): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: q.id,
    flags: q.flags,
    questions: [{ type: q.type as dnsPacket.RecordType, name: q.name, class: q.klass }],
    additionals: q.edns ? [EDNS_OPT] : [],
  });
}

describe('the DNS responder never forwards a query', { timeout: 120_000 }, () => {
  it('the trap works: a lookup through node:dns or a stray datagram reaches the recorder', async () => {
    const before = recorder.packets;
    await dns.promises.lookup('probe.example').catch(() => undefined);
    const stray = dgram.createSocket('udp4');
    await new Promise<void>((r) => stray.send(Buffer.from('x'), 53, '192.0.2.53', () => r()));
    stray.close();
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(recorder.packets >= before + 2, `the recorder saw ${recorder.packets - before}`);
    recorder.packets = 0;
  });

  it('well-formed queries of every type, class and flag, over UDP and TCP: answered locally, zero packets out', async () => {
    let answered = 0;
    await fc.assert(
      fc.asyncProperty(query, fc.boolean(), async (q, overTcp) => {
        const packet = encode(q);
        const reply = overTcp ? await askTcp(packet) : await askUdp(packet);
        if (reply) answered++;
        assert.equal(recorder.packets, 0, `forwarded: ${q.type} ${q.klass} ${q.name}`);
      }),
      { numRuns: 150 },
    );
    assert.ok(answered > 100, `only ${answered} of 150 queries were answered: the test would prove nothing`);
    // A forwarder that sends after answering would be caught here.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(recorder.packets, 0);
  });

  it('arbitrary bytes, over UDP and TCP: zero packets out', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.boolean(), async (bytes, overTcp) => {
        await (overTcp ? askTcp(bytes) : askUdp(bytes));
        assert.equal(recorder.packets, 0);
      }),
      { numRuns: 100 },
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(recorder.packets, 0);
  });
});
