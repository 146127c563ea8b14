/**
 * Fake upstream servers for proxy tests: real sockets on 127.0.0.1, ephemeral ports. The echo server reports what
 * it received (method, target, raw headers, body size) so a test can prove what the proxy forwarded; the hostile
 * ones reset, stall or present a certificate nobody trusts.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import tls from 'node:tls';
import { WebSocketServer } from 'ws';
import { generateRunCa } from '../../src/cli/session/ca.js';
import { AllowlistSchema } from '../../src/protocol/allowlist.js';
import { memoryLog } from '../../src/proxy/log/network-log.js';
import { startProxy, type ProxyOptions, type RunningProxy } from '../../src/proxy/start.js';
import type { TestPki } from './tls-fixtures.js';

export interface EchoReport {
  method: string;
  url: string;
  rawHeaders: string[];
  bodyBytes: number;
  bodySha256: string;
}

export interface FakeUpstream {
  port: number;
  /** Every request head received, in order. */
  received: Array<{ method: string; url: string; rawHeaders: string[] }>;
  /** TCP connections accepted so far (keep-alive reuse shows as fewer connections than requests). */
  connections: number;
  close(): Promise<void>;
}

/** Deterministic bytes so a client can check a large body without the server keeping it. */
export function patternStream(total: number, chunkSize = 64 * 1024): Readable {
  const chunk = Buffer.alloc(chunkSize);
  for (let i = 0; i < chunkSize; i++) chunk[i] = i % 251;
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= total) {
        this.push(null);
        return;
      }
      const n = Math.min(chunkSize, total - sent);
      sent += n;
      this.push(n === chunkSize ? chunk : chunk.subarray(0, n));
    },
  });
}

/**
 * Routes: `/bytes/N` streams N bytes; `/status/N` answers N; `/header/N` sends an N-byte header; `/stall` never answers; `/ws` is a WebSocket echo; `/expect` answers 100
 * Continue only after checking the head; anything else echoes an EchoReport as JSON after reading the body.
 */
function route(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = req.url ?? '/';
  const bytes = /^\/bytes\/(\d+)/.exec(url);
  if (bytes) {
    const total = Number(bytes[1]);
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': total });
    patternStream(total).pipe(res);
    req.resume();
    return;
  }
  if (url.startsWith('/stall')) {
    req.resume();
    return;
  }
  const bigHeader = /^\/header\/(\d+)/.exec(url);
  if (bigHeader) {
    req.resume();
    res.writeHead(200, { 'X-Big': 'b'.repeat(Number(bigHeader[1])), 'Content-Length': 2 });
    res.end('ok');
    return;
  }
  const status = /^\/status\/(\d+)/.exec(url);
  if (status) {
    req.resume();
    res.writeHead(Number(status[1]), { 'Content-Type': 'text/plain' });
    res.end('status');
    return;
  }
  const hash = createHash('sha256');
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    hash.update(chunk);
  });
  req.on('end', () => {
    const report: EchoReport = {
      method: req.method ?? '',
      url,
      rawHeaders: req.rawHeaders,
      bodyBytes: size,
      bodySha256: hash.digest('hex'),
    };
    const body = JSON.stringify(report);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
}

async function serve(server: http.Server): Promise<FakeUpstream> {
  const received: FakeUpstream['received'] = [];
  const state = { connections: 0 };
  server.on('connection', () => state.connections++);
  server.on('request', (req: http.IncomingMessage) => {
    received.push({ method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders });
  });
  server.on('request', route);
  server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
    received.push({ method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders });
    if (req.url?.startsWith('/expect-refuse')) {
      res.writeHead(417, { 'Content-Type': 'text/plain', Connection: 'close' });
      res.end('no thanks');
      return;
    }
    res.writeContinue();
    route(req, res);
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    received.push({ method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders });
    if (req.url !== '/ws') {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `echo:${(data as Buffer).toString()}`));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    received,
    get connections() {
      return state.connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export function startHttpUpstream(): Promise<FakeUpstream> {
  return serve(http.createServer({ keepAliveTimeout: 30_000, maxHeaderSize: 128 * 1024 }));
}

export function startHttpsUpstream(pki: Pick<TestPki, 'certPem' | 'keyPem'>): Promise<FakeUpstream> {
  return serve(
    https.createServer({ cert: pki.certPem, key: pki.keyPem, keepAliveTimeout: 30_000, maxHeaderSize: 128 * 1024 }),
  );
}

interface RawServer {
  port: number;
  close(): Promise<void>;
}

async function rawServer(onSocket: (socket: net.Socket) => void): Promise<RawServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onSocket(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Accepts, reads the first bytes, then resets the connection (RST). */
export function startResettingServer(): Promise<RawServer> {
  return rawServer((socket) => socket.once('data', () => socket.resetAndDestroy()));
}

/** Accepts and never says a word: no TLS handshake, no HTTP response. */
export function startSilentServer(): Promise<RawServer> {
  return rawServer(() => undefined);
}

/** A port with nothing listening (bound once, then released). */
export async function unusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * git's smart HTTP over TLS: a tiny HTTPS server that runs `git http-backend` as a CGI for every request,
 * serving the repositories under `projectRoot`.
 */
export async function startGitHttpsServer(
  pki: Pick<TestPki, 'certPem' | 'keyPem'>,
  projectRoot: string,
  backend = '/usr/lib/git-core/git-http-backend',
  host = '127.0.0.1',
): Promise<RawServer> {
  const server = https.createServer({ cert: pki.certPem, key: pki.keyPem }, (req, res) => {
    const [path = '/', query = ''] = (req.url ?? '/').split('?');
    const header = (name: string) => String(req.headers[name] ?? '');
    const cgi = spawn(backend, [], {
      env: {
        GIT_PROJECT_ROOT: projectRoot,
        GIT_HTTP_EXPORT_ALL: '1',
        REQUEST_METHOD: req.method ?? 'GET',
        PATH_INFO: decodeURIComponent(path),
        QUERY_STRING: query,
        CONTENT_TYPE: header('content-type'),
        CONTENT_LENGTH: header('content-length'),
        HTTP_CONTENT_ENCODING: header('content-encoding'),
        HTTP_GIT_PROTOCOL: header('git-protocol'),
        REMOTE_ADDR: '127.0.0.1',
        PATH: process.env.PATH ?? '/usr/bin:/bin',
      },
    });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      headersDone = true;
      let status = 200;
      for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === 'status') status = parseInt(value, 10);
        else res.setHeader(name, value);
      }
      res.writeHead(status);
      res.write(head.subarray(end + 4));
    });
    cgi.stdout.on('end', () => res.end());
    cgi.on('error', () => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export interface GitFront {
  port: number;
  /** Every Authorization value that arrived, in order (entries of one request each). */
  authorizations: string[];
  close(): Promise<void>;
}

/**
 * GitHub in miniature in front of a git http-backend server: 401 with a Basic challenge without credentials, 403
 * for anything but `expected`; otherwise the request is passed to the backend.
 */
export async function startAuthenticatingGitFront(options: {
  pki: Pick<TestPki, 'certPem' | 'keyPem' | 'caPem'>;
  backendPort: number;
  /** The name the backend's certificate carries (sent as SNI and Host). */
  servername: string;
  expected: string;
  host?: string;
}): Promise<GitFront> {
  const { pki, backendPort, servername, expected } = options;
  const authorizations: string[] = [];
  const server = https.createServer({ cert: pki.certPem, key: pki.keyPem }, (req, res) => {
    const auth = req.headers.authorization;
    if (auth === undefined) {
      req.resume();
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="GitHub"', 'Content-Length': 0 });
      return void res.end();
    }
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      if (req.rawHeaders[i]!.toLowerCase() === 'authorization') authorizations.push(req.rawHeaders[i + 1]!);
    }
    if (auth !== expected) {
      req.resume();
      res.writeHead(403, { 'Content-Length': 0 });
      return void res.end();
    }
    const inner = https.request(
      {
        host: '127.0.0.1',
        port: backendPort,
        servername,
        ca: pki.caPem,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: servername },
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    inner.on('error', () => res.destroy());
    req.pipe(inner);
  });
  await new Promise<void>((resolve) => server.listen(0, options.host ?? '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    authorizations,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** One reply as a test sees it: status, headers and the whole body. */
export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface ProxyClientRequest {
  /** `https` talks TLS to the proxy's HTTPS port (SNI = `sni ?? host`); `http` plain to its HTTP port. */
  listener: 'http' | 'https';
  port: number;
  host: string;
  sni?: string;
  /** Trusted CA (the proxy's run CA). */
  ca?: string;
  method?: string;
  path?: string;
  headers?: http.OutgoingHttpHeaders | string[];
  body?: string | Buffer;
  agent?: http.Agent | false;
}

/** A request to the proxy as a sandboxed program makes it: to the proxy's address, naming the real host. */
export function requestViaProxy(r: ProxyClientRequest): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const options: https.RequestOptions = {
      host: '127.0.0.1',
      port: r.port,
      method: r.method ?? 'GET',
      path: r.path ?? '/',
      headers: r.headers ?? { Host: r.host },
      agent: r.agent ?? false,
    };
    const req =
      r.listener === 'https'
        ? https.request({ ...options, servername: r.sni ?? r.host, ca: r.ca })
        : http.request(options);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(r.body);
  });
}

/**
 * Sends bytes exactly as written on a plain TCP connection (or over TLS with `tlsTo`'s SNI and CA) and returns
 * everything read until the peer closes or `settleMs` passes.
 */
export function rawExchange(
  port: number,
  bytes: string,
  settleMs = 1500,
  tlsTo?: { servername: string; ca: string },
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsTo
      ? tls.connect({ host: '127.0.0.1', port, ...tlsTo }, () => socket.write(bytes))
      : net.connect(port, '127.0.0.1', () => socket.write(bytes));
    let out = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(out);
    }, settleMs);
    socket.on('data', (d: Buffer) => (out += d.toString('latin1')));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    socket.on('error', reject);
  });
}

export interface ProxyFixture {
  proxy: RunningProxy;
  runCa: { certPem: string; keyPem: string };
  log: ReturnType<typeof memoryLog>;
  https(host: string, extra?: Partial<ProxyClientRequest>): Promise<Reply>;
  http(host: string, extra?: Partial<ProxyClientRequest>): Promise<Reply>;
  close(): Promise<void>;
}

/** The real proxy in-process on ephemeral ports with a fresh run CA and an in-memory log. */
export async function startProxyFixture(
  options: { allowlist: unknown } & Partial<Omit<ProxyOptions, 'allowlist'>>,
): Promise<ProxyFixture> {
  const runCa = await generateRunCa();
  const log = memoryLog();
  const proxy = await startProxy({
    ca: runCa,
    sandboxAddress: '10.199.1.100',
    listen: { host: '127.0.0.1', http: 0, https: 0, dns: 0 },
    log,
    ...options,
    upstream: { resolve: () => Promise.reject(new Error('no DNS in tests')), ...options.upstream },
    allowlist: AllowlistSchema.parse(options.allowlist),
  });
  return {
    proxy,
    runCa,
    log,
    https: (host, extra = {}) =>
      requestViaProxy({ listener: 'https', port: proxy.addresses.https, host, ca: runCa.certPem, ...extra }),
    http: (host, extra = {}) => requestViaProxy({ listener: 'http', port: proxy.addresses.http, host, ...extra }),
    close: () => proxy.close(),
  };
}
