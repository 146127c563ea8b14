import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import type { Allowlist } from '../protocol/allowlist.js';
import { isGlob } from '../protocol/fnmatch.js';
import { DEFAULT_PORTS, isIPv4, isIPv6, normalizeHost } from '../protocol/policy.js';
import { decodeProxyConfig, encodeReadyLine, ProxyWireError, type ProxyConfig } from '../protocol/proxy-wire.js';
import { createCredentialProcessor } from './credentials/index.js';
import { passThrough, type CredentialProcessor } from './credentials/types.js';
import { startDnsResponder, type DnsResponder } from './dns/responder.js';
import type { HttpLimits } from './http/exchange.js';
import { attachProxyHandlers } from './http/handler.js';
import { openProcessLog, type ProcessLog } from './log/file-sinks.js';
import { silentLog, type NetworkLog } from './log/network-log.js';
import { createLeafIssuer } from './tls/leaf-certs.js';
import { createUpstreamConnector, MAX_HEADER_BYTES } from './upstream/connector.js';
import { systemResolver } from './upstream/resolver.js';
import { createUpstreamRouter, type UpstreamResolver } from './upstream/route.js';

/**
 * The proxy as one object: DNS responder, HTTP listener, HTTPS listener and a listener per further port the policy
 * names, sharing one policy, one credential processor, one upstream pool and one log. Production (main.ts, in the proxy container) and the tests start
 * the same thing; it takes everything as arguments and reads no file or environment variable.
 */

export interface ProxyOptions {
  allowlist: Allowlist;
  /** The per-run CA that signs interception leaves; its key stays in this process. */
  ca: { certPem: string; keyPem: string };
  /** The address every DNS A query is answered with: this proxy's address on the sandbox network. */
  sandboxAddress: string;
  /**
   * Ports 0 pick free ports (tests); `addresses` reports what was bound. The HTTP listener is judged as port 80 and
   * the HTTPS one as 443 whatever they are bound to. `ports` are the further ports the allowlist names: each
   * listener takes TLS and plain HTTP (told apart by the first byte) and is judged as `port`, bound to `bind`
   * (default: `port`; 0 in tests).
   */
  listen: {
    host: string;
    http: number;
    https: number;
    dns: number;
    ports?: ReadonlyArray<{ port: number; bind?: number }>;
  };
  upstream: {
    /** name → "IP" or "IP:PORT": fixed addresses that bypass DNS and the private-address guard. */
    hosts?: Readonly<Record<string, string>>;
    /** Extra PEM CAs trusted for upstream TLS on top of the system roots. */
    caPem?: string;
    /** Resolver for upstream names; default: `dns` servers, or the system resolver when none are given. */
    resolve?: UpstreamResolver;
    dns?: readonly string[];
    /** Addresses of the machine running airlock, refused as upstream addresses (see UpstreamRouterOptions). */
    hostAddresses?: readonly string[];
    /** TCP connect plus TLS handshake. Default 10 s. */
    connectTimeoutMs?: number;
    /** Silence from upstream while a request is in flight. Default 5 min. */
    idleTimeoutMs?: number;
  };
  credentials?: CredentialProcessor;
  log?: NetworkLog;
  /** Audit mode: policy refusals are forwarded and logged as `would_block`; safety refusals stay. Default off. */
  audit?: boolean;
  /** Written into the start line of the log. */
  run?: { id: string; policySha256?: string; baseCommit?: string };
  limits?: Partial<HttpLimits> & {
    /** Interception certificates kept; least recently used dropped beyond. Default 1000. */
    leafCacheSize?: number;
  };
  now?: () => Date;
}

export interface RunningProxy {
  /** Bound ports; `ports` maps each declared port to where it was bound. */
  addresses: { http: number; https: number; dns: number; ports: Record<number, number> };
  /** Interception certificates cached and minted so far. */
  stats(): { leafCacheSize: number; leavesMinted: number };
  close(): Promise<void>;
}

/** A pattern as a plain DNS name (normalised), or null when it is a glob or an IP literal. */
function plainName(pattern: string): string | null {
  const host = normalizeHost(pattern);
  return host === null || isGlob(pattern) || isIPv4(host) || isIPv6(host) ? null : host;
}

/** Distinct non-null results of `pick` over every host pattern of the allowlist, at most `limit` of them. */
function fromHostPatterns(allowlist: Allowlist, limit: number, pick: (pattern: string) => string | null): string[] {
  const found = new Set<string>();
  for (const pattern of [...allowlist.domains, ...allowlist.url_prefixes.map((e) => e.host)]) {
    const name = pick(pattern);
    if (name !== null) found.add(name);
  }
  return [...found].slice(0, Math.max(0, limit));
}

/** Host names the allowlist names exactly (no glob, no IP literal), at most `limit` of them. */
export function premintNames(allowlist: Allowlist, limit: number): string[] {
  return fromHostPatterns(allowlist, limit, plainName);
}

/**
 * Suffixes of the allowlist's `*.suffix` patterns whose suffix is a plain name of two labels or more: one
 * `*.suffix` leaf then covers every single-label child. `*.com` is never one (no wildcard across a TLD).
 */
export function wildcardParents(allowlist: Allowlist, limit: number): string[] {
  return fromHostPatterns(allowlist, limit, (pattern) => {
    const suffix = pattern.startsWith('*.') ? plainName(pattern.slice(2)) : null;
    return suffix?.includes('.') ? suffix : null;
  });
}

async function listen(server: net.Server, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    if (server instanceof http.Server) server.closeAllConnections();
  });
}

/** How long a connection on a declared port may stay silent before its first byte says TLS or plain. */
const FIRST_BYTE_TIMEOUT_MS = 60_000;

/**
 * The front of a declared port: one TCP listener whose connections go to the plain or the TLS server of that port,
 * told apart by the first byte (0x16 opens every TLS handshake; no HTTP method starts with it). The two servers
 * never listen themselves; `close` ends every connection the front accepted.
 */
function portFront(plain: http.Server, secure: https.Server): net.Server & { dropAll(): void } {
  // Node starts a server's connection tracking (which enforces headersTimeout) when it starts listening.
  plain.emit('listening');
  secure.emit('listening');
  const sockets = new Set<net.Socket>();
  // Node's http and https servers turn Nagle off on what they accept; a plain net server does not, and the servers
  // never accept these sockets themselves.
  const front = net.createServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => socket.destroy());
    socket.setTimeout(FIRST_BYTE_TIMEOUT_MS, () => socket.destroy());
    socket.once('close', () => sockets.delete(socket));
    socket.once('data', (first: Buffer) => {
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(first);
      (first[0] === 0x16 ? secure : plain).emit('connection', socket);
      // The server reads the chunk given back only once the socket flows again, and only if that happens after
      // it has wired itself up.
      process.nextTick(() => socket.resume());
    });
  });
  return Object.assign(front, {
    dropAll() {
      for (const socket of sockets) socket.destroy();
    },
  });
}

/** Client-side timeouts on our listeners: generous for long transfers, strict for slow headers. */
const SERVER_TIMEOUTS = {
  // Uploads of several GB must not hit a whole-request deadline.
  requestTimeout: 0,
  headersTimeout: 60_000,
  keepAliveTimeout: 65_000,
  maxHeaderSize: MAX_HEADER_BYTES,
};

export async function startProxy(options: ProxyOptions): Promise<RunningProxy> {
  const now = options.now ?? (() => new Date());
  const log = options.log ?? silentLog;
  const leafCacheSize = options.limits?.leafCacheSize ?? 1000;
  const issuer = createLeafIssuer(options.ca, {
    cacheSize: leafCacheSize,
    now,
    wildcardParents: wildcardParents(options.allowlist, Math.floor(leafCacheSize / 4)),
  });
  const route = createUpstreamRouter({
    hosts: options.upstream.hosts ?? {},
    resolve: options.upstream.resolve ?? systemResolver(options.upstream.dns ?? []),
    ...(options.upstream.hostAddresses ? { hostAddresses: options.upstream.hostAddresses } : {}),
  });
  const connector = createUpstreamConnector({
    caPem: options.upstream.caPem,
    connectTimeoutMs: options.upstream.connectTimeoutMs ?? 10_000,
    idleTimeoutMs: options.upstream.idleTimeoutMs ?? 300_000,
  });
  const ctx = {
    allowlist: options.allowlist,
    credentials: options.credentials ?? passThrough,
    route,
    connector,
    log,
    now,
    audit: options.audit ?? false,
    limits: {
      drainBytes: options.limits?.drainBytes ?? 8 * 1024 * 1024,
      drainTimeoutMs: options.limits?.drainTimeoutMs ?? 10_000,
    },
  };

  const tlsServer = (): https.Server => {
    const server = https.createServer({
      ...SERVER_TIMEOUTS,
      ALPNProtocols: ['http/1.1'],
      minVersion: 'TLSv1.2',
      SNICallback: (servername, cb) => {
        issuer.secureContextFor(servername).then(
          (context) => cb(null, context),
          (err: Error) => cb(err),
        );
      },
    });
    // Without SNI there is no name to mint for, so the handshake fails: no certificate is ever presented for an
    // unnamed host, and a client cannot reach the request stage without committing to a name.
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
      const servername = typeof socket.servername === 'string' && socket.servername !== '' ? socket.servername : null;
      if (servername === null && err.code === 'ECONNRESET') return;
      log.write({
        event: 'tls',
        ts: now(),
        servername,
        code: servername === null ? 'host_mismatch' : 'handshake_failed',
        reason: servername === null ? 'the client sent no SNI' : (err.code ?? err.message),
      });
    });
    return server;
  };
  const httpServer = http.createServer({ ...SERVER_TIMEOUTS });
  const httpsServer = tlsServer();
  attachProxyHandlers(httpServer, { scheme: 'http', port: DEFAULT_PORTS.http }, ctx);
  attachProxyHandlers(httpsServer, { scheme: 'https', port: DEFAULT_PORTS.https }, ctx);
  // Every further port the policy names: its requests are judged (and routed) as made to that port.
  const declared = (options.listen.ports ?? []).map(({ port, bind }) => {
    const plain = http.createServer({ ...SERVER_TIMEOUTS });
    const secure = tlsServer();
    attachProxyHandlers(plain, { scheme: 'http', port }, ctx);
    attachProxyHandlers(secure, { scheme: 'https', port }, ctx);
    return { port, bind: bind ?? port, plain, secure, front: portFront(plain, secure) };
  });
  const closeAll = () =>
    Promise.all([
      closeServer(httpServer),
      closeServer(httpsServer),
      ...declared.map((d) => {
        const closed = closeServer(d.front);
        d.front.dropAll();
        // Not listening, so this only stops their connection tracking.
        for (const inner of [d.plain, d.secure]) inner.close(() => undefined);
        return closed;
      }),
    ]);

  log.write({
    event: 'start',
    ts: now(),
    runId: options.run?.id,
    policySha256: options.run?.policySha256,
    baseCommit: options.run?.baseCommit,
  });
  let dns: DnsResponder | undefined;
  try {
    const httpPort = await listen(httpServer, options.listen.host, options.listen.http);
    const httpsPort = await listen(httpsServer, options.listen.host, options.listen.https);
    const ports: Record<number, number> = {};
    for (const d of declared) ports[d.port] = await listen(d.front, options.listen.host, d.bind);
    dns = await startDnsResponder({
      host: options.listen.host,
      port: options.listen.dns,
      answerAddress: options.sandboxAddress,
      onQuery: (q) => log.write({ event: 'dns', ts: now(), ...q }),
    });
    const running = dns;
    // Leaves for the hosts the allowlist names exactly, and one `*.suffix` leaf per `*.suffix` pattern, are minted
    // now, in the background, so the first request to such a host does not wait for one. Deeper names under a
    // wildcard (`a.b.suffix`) are minted on first use.
    issuer.mintWildcards().catch(() => undefined);
    for (const name of premintNames(options.allowlist, Math.floor(leafCacheSize / 2))) {
      issuer.secureContextFor(name).catch(() => undefined);
    }
    return {
      addresses: { http: httpPort, https: httpsPort, dns: running.port, ports },
      stats: () => ({ leafCacheSize: issuer.size, leavesMinted: issuer.minted }),
      async close() {
        await Promise.all([closeAll(), running.close()]);
        connector.close();
      },
    };
  } catch (err) {
    await Promise.all([closeAll(), dns?.close()]);
    connector.close();
    throw err;
  }
}

/** What a validated configuration means for `startProxy`, whichever channel it arrived on (stdin, a mounted file). */
export function proxyOptionsFrom(config: ProxyConfig, log: NetworkLog): ProxyOptions {
  return {
    allowlist: config.allowlist,
    ca: config.ca,
    sandboxAddress: config.sandboxAddress,
    listen: { ...config.listen, ports: (config.listen.ports ?? []).map((port) => ({ port })) },
    upstream: {
      hosts: config.upstream.hosts,
      dns: config.upstream.dns,
      connectTimeoutMs: config.upstream.connectTimeoutMs,
      ...(config.upstream.caPem ? { caPem: config.upstream.caPem } : {}),
      ...(config.upstream.hostAddresses ? { hostAddresses: config.upstream.hostAddresses } : {}),
    },
    credentials: createCredentialProcessor(config.credentials),
    log,
    audit: config.audit ?? false,
    run: config.run,
  };
}

export interface ProxyProcessIo {
  stdin: NodeJS.ReadableStream;
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
  /** Aborting it stops the proxy like EOF on stdin (SIGTERM in the container). */
  signal?: AbortSignal;
}

/**
 * The proxy container's program: one line of JSON config on stdin, `AIRLOCK-PROXY-READY {ports}` on stdout once
 * every listener is bound, then serve until stdin reaches EOF — the host holds stdin open for the life of the run,
 * so closing it (or the host dying) stops the proxy. Resolves to the exit code.
 */
export async function runProxyProcess(io: ProxyProcessIo): Promise<number> {
  const lines = createInterface({ input: io.stdin, crlfDelay: Infinity });
  io.signal?.addEventListener('abort', () => lines.close());
  const iterator = lines[Symbol.asyncIterator]();
  const first = await iterator.next();
  if (first.done) {
    io.stderr.write('airlock-proxy: no configuration on stdin\n');
    return 1;
  }
  let proxy: RunningProxy;
  let log: ProcessLog;
  try {
    const config = decodeProxyConfig(first.value);
    log = openProcessLog(config.log ?? {}, io.stdout);
    proxy = await startProxy(proxyOptionsFrom(config, log));
  } catch (err) {
    const message = err instanceof ProxyWireError ? err.message : `cannot start: ${(err as Error).message}`;
    io.stderr.write(`airlock-proxy: ${message.replace(/\s+/g, ' ')}\n`);
    return 1;
  }
  // The start event (held for batching) goes out before the ready line, as it happened.
  log.flush();
  io.stdout.write(encodeReadyLine(proxy.addresses));
  // Anything after the config line is ignored; only EOF matters.
  for (let next = await iterator.next(); !next.done; next = await iterator.next());
  await proxy.close();
  await log.close();
  return 0;
}
