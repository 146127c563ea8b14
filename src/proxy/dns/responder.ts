import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { answerQuery, ipv4Bytes } from './packet.js';

/**
 * The sandbox's resolver, on UDP and TCP of one port. It answers from `answerQuery` alone and has no upstream: it
 * opens no socket of its own and imports no resolver, so a query can never leave the proxy (a DNS tunnel needs a
 * forwarder somewhere on the path). TCP is served because resolvers retry over it and some tools use it directly.
 */

export interface DnsQueryEvent {
  transport: 'udp' | 'tcp';
  /** `A`, `AAAA`, `TXT`, … or `TYPE<n>` for types without a name here. */
  type: string;
  /** Presentation form without the trailing dot; unprintable bytes as `\DDD`. */
  name: string;
  /** The address answered for an A query, null otherwise. */
  answer: string | null;
}

export interface DnsResponderOptions {
  host: string;
  /** 0 picks a free port (the same one for UDP and TCP). */
  port: number;
  /** The proxy's IPv4 address, the answer to every A query. */
  answerAddress: string;
  onQuery?: (query: DnsQueryEvent) => void;
  /** Socket-level failures that do not stop the responder. */
  onError?: (error: Error) => void;
  /** Largest query accepted, UDP datagram or TCP message. Default 4096 (Airut's read size). */
  maxMessageBytes?: number;
  /** A TCP connection with no traffic for this long is closed. Default 10 s. */
  tcpIdleTimeoutMs?: number;
  /** TCP connections open at once; more are refused. Default 64. */
  maxTcpConnections?: number;
}

export interface DnsResponder {
  port: number;
  close(): Promise<void>;
}

const BIND_ATTEMPTS = 8;
/** Stop reading a TCP connection whose client is not reading its answers, until they drain. */
const TCP_WRITE_BACKLOG_BYTES = 64 * 1024;

export async function startDnsResponder(opts: DnsResponderOptions): Promise<DnsResponder> {
  const address = ipv4Bytes(opts.answerAddress);
  const maxMessageBytes = opts.maxMessageBytes ?? 4096;
  const idleTimeoutMs = opts.tcpIdleTimeoutMs ?? 10_000;
  const maxTcpConnections = opts.maxTcpConnections ?? 64;
  const reportError = (error: Error) => opts.onError?.(error);

  function answer(packet: Uint8Array, transport: DnsQueryEvent['transport']): Uint8Array | null {
    if (packet.length > maxMessageBytes) return null;
    const result = answerQuery(packet, address);
    if (result === null) return null;
    if (opts.onQuery) {
      try {
        opts.onQuery({ transport, type: result.type, name: result.name, answer: result.answer });
      } catch (error) {
        // A failing log sink must not turn into a resolution failure for the sandbox.
        reportError(error instanceof Error ? error : new Error(String(error)));
      }
    }
    return result.response;
  }

  const connections = new Set<net.Socket>();

  function serveTcp(socket: net.Socket): void {
    connections.add(socket);
    socket.setNoDelay(true);
    socket.setTimeout(idleTimeoutMs, () => socket.destroy());
    socket.on('close', () => connections.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.on('drain', () => socket.resume());
    let pending: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= 2) {
        const length = pending.readUInt16BE(0);
        if (length > maxMessageBytes) {
          socket.destroy();
          return;
        }
        if (pending.length < 2 + length) break;
        const reply = answer(pending.subarray(2, 2 + length), 'tcp');
        pending = pending.subarray(2 + length);
        if (reply === null) continue;
        const framed = Buffer.alloc(2 + reply.length);
        framed.writeUInt16BE(reply.length, 0);
        framed.set(reply, 2);
        socket.write(framed);
        if (socket.writableLength > TCP_WRITE_BACKLOG_BYTES) socket.pause();
      }
      // Keep only the unread tail, not the whole chunk it is a view of.
      if (pending.length > 0) pending = Buffer.from(pending);
    });
  }

  const { udp, tcp } = await bindBoth(opts.host, opts.port);
  udp.on('error', reportError);
  udp.on('message', (packet, peer) => {
    const reply = answer(packet, 'udp');
    if (reply === null) return;
    udp.send(reply, peer.port, peer.address, (error) => {
      if (error) reportError(error);
    });
  });
  tcp.maxConnections = maxTcpConnections;
  tcp.on('connection', serveTcp);
  tcp.on('error', reportError);

  return {
    port: udp.address().port,
    async close() {
      for (const socket of connections) socket.destroy();
      await Promise.all([
        new Promise<void>((resolve) => udp.close(() => resolve())),
        new Promise<void>((resolve) => tcp.close(() => resolve())),
      ]);
    },
  };
}

/** UDP first (it picks the port when asked for 0), then TCP on the same number; retried if TCP's is taken. */
async function bindBoth(host: string, port: number): Promise<{ udp: dgram.Socket; tcp: net.Server }> {
  const type = net.isIPv6(host) ? 'udp6' : 'udp4';
  for (let attempt = 1; ; attempt++) {
    const udp = dgram.createSocket({ type });
    try {
      udp.bind(port, host);
      await once(udp, 'listening');
    } catch (error) {
      udp.close();
      throw error;
    }
    const tcp = net.createServer();
    try {
      tcp.listen(udp.address().port, host);
      await once(tcp, 'listening');
      return { udp, tcp };
    } catch (error) {
      udp.close();
      const taken = (error as NodeJS.ErrnoException).code === 'EADDRINUSE';
      if (!taken || port !== 0 || attempt >= BIND_ATTEMPTS) throw error;
    }
  }
}
