/**
 * A stock Node upstream that keeps everything it is sent: the plaintext bytes of every connection (decrypted when
 * the peer spoke TLS, told apart by the first byte) and every request Node's own parser (llhttp) read from them,
 * with its body. It stands for the servers behind the proxy in the request-integrity tests: whatever a smuggled or
 * steered request would do to a real server, it does here, on the record.
 *
 * Upgrades, by path: `/ws-real…` gets a genuine WebSocket accept and the connection stops being HTTP; any other
 * upgrade gets a careless `101` (no `Sec-WebSocket-Accept`, or a wrong one for `…ws-wrong-accept…`) and the server
 * goes on reading HTTP/1.1 from the connection, as a server that does not really switch protocols (or speaks h2c
 * and routes each stream by its own authority) would.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { streamFrom } from './plain-stream.js';

export interface UpstreamRequest {
  /** Index of the connection it arrived on (into `connections`). */
  connection: number;
  method: string;
  url: string;
  /** Header pairs as received. */
  headers: Array<[string, string]>;
  body: Buffer;
  /** The request was an upgrade the server answered with 101. */
  upgraded: boolean;
}

export interface UpstreamConnection {
  tls: boolean;
  /** Plaintext bytes in arrival order. */
  chunks: Buffer[];
  /** Byte offset where HTTP ended for good (a genuine WebSocket accept), or null. */
  httpEndsAt: number | null;
}

export interface RecordingUpstream {
  port: number;
  requests: UpstreamRequest[];
  connections: UpstreamConnection[];
  /** Every plaintext byte one connection carried. */
  bytesOf(connection: number): Buffer;
  close(): Promise<void>;
}

export const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export function websocketAccept(key: string): string {
  return createHash('sha1')
    .update(key + WEBSOCKET_GUID)
    .digest('base64');
}

function pairs(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

export async function startRecordingUpstream(
  options: { pki?: { certPem: string; keyPem: string } } = {},
): Promise<RecordingUpstream> {
  const requests: UpstreamRequest[] = [];
  const connections: UpstreamConnection[] = [];
  const sockets = new Set<net.Socket>();
  const connectionOf = new WeakMap<object, number>();
  const received = (id: number) => connections[id]!.chunks.reduce((n, c) => n + c.length, 0);

  // A missing Host gets the default virtual host, as on many real servers (Node's default would answer 400).
  const server = http.createServer({
    keepAliveTimeout: 30_000,
    requestTimeout: 0,
    headersTimeout: 30_000,
    requireHostHeader: false,
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const id = connectionOf.get(req.socket) ?? -1;
    const body: Buffer[] = [];
    req.on('data', (c: Buffer) => body.push(c));
    req.on('error', () => undefined);
    req.on('end', () => {
      requests.push({
        connection: id,
        method: req.method ?? '',
        url: req.url ?? '',
        headers: pairs(req.rawHeaders),
        body: Buffer.concat(body),
        upgraded: false,
      });
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 2 });
      res.end('ok');
    });
  });
  server.on('clientError', (_err, socket: Duplex) => socket.destroy());
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const id = connectionOf.get(socket) ?? -1;
    socket.on('error', () => undefined);
    const url = req.url ?? '';
    requests.push({
      connection: id,
      method: req.method ?? '',
      url,
      headers: pairs(req.rawHeaders),
      body: Buffer.alloc(0),
      upgraded: true,
    });
    const key = req.headers['sec-websocket-key'];
    if (url.includes('ws-real') && typeof key === 'string') {
      if (id >= 0) connections[id]!.httpEndsAt = received(id) - head.length;
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Accept: ${websocketAccept(key)}\r\n\r\n`,
      );
      socket.resume();
      return;
    }
    const accept = url.includes('ws-wrong-accept') ? `Sec-WebSocket-Accept: ${websocketAccept('wrong')}\r\n` : '';
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${req.headers.upgrade ?? 'websocket'}\r\nConnection: Upgrade\r\n${accept}\r\n`,
    );
    // Careless: whatever follows is read as more HTTP/1.1 requests, each routed by its own Host.
    const rest = streamFrom(socket, head);
    connectionOf.set(rest, id);
    server.emit('connection', rest);
  });

  const secureContext = options.pki
    ? tls.createSecureContext({ cert: options.pki.certPem, key: options.pki.keyPem })
    : null;
  const front = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.once('data', (first: Buffer) => {
      const id = connections.length;
      const record: UpstreamConnection = { tls: first[0] === 0x16, chunks: [], httpEndsAt: null };
      connections.push(record);
      let stream: Duplex = streamFrom(socket, first);
      if (record.tls) {
        if (!secureContext) return void socket.destroy();
        const secure = new tls.TLSSocket(stream, { isServer: true, secureContext });
        secure.on('error', () => socket.destroy());
        stream = streamFrom(secure, Buffer.alloc(0));
      }
      stream.on('data', (bytes: Buffer) => record.chunks.push(bytes));
      connectionOf.set(stream, id);
      server.emit('connection', stream);
    });
  });
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  return {
    port: (front.address() as AddressInfo).port,
    requests,
    connections,
    bytesOf: (id) => Buffer.concat(connections[id]?.chunks ?? []),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        front.close(() => resolve());
      }),
  };
}
