/**
 * The escape suite's shared fixture: canaries, listeners on this machine that record every byte they are sent,
 * a workspace whose `.airlock/` policy names them, and a runner that attributes what the listeners saw to the
 * vector that was running at the time. Everything listens on this machine; the sandbox can only reach it through
 * the proxy (upstream_hosts → host-gateway), so no packet leaves it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import http from 'node:http';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { streamFrom } from '../helpers/plain-stream.js';
import { containsSecret } from '../helpers/secret-forms.js';
import { websocketAccept } from '../helpers/recording-upstream.js';
import { makeTestPki, type TestPki } from '../helpers/tls-fixtures.js';

export { containsSecret } from '../helpers/secret-forms.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const entry = path.join(root, 'dist/cli/bin.js');
export const probesDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'probes');

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const UPPER_DIGITS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

function randomFrom(alphabet: string, length: number): string {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(length));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
}

/** Values that must never turn up where they do not belong. Fresh per test file. */
export interface Canaries {
  /** Real value of the masked secret GH_TOKEN: only ever in the Authorization header at allowed.test. */
  ghToken: string;
  /** Real AWS access key id: only ever at the signing scope s3.aws.test. */
  awsKeyId: string;
  /** Real AWS secret key: never on any wire (only signatures made with it are). */
  awsSecret: string;
  /** The content blocked.test serves: must never reach the sandbox. */
  blockedContent: string;
}

export function makeCanaries(): Canaries {
  return {
    ghToken: 'ghp_' + randomFrom(ALNUM, 36),
    awsKeyId: 'AKIA' + randomFrom(UPPER_DIGITS, 16),
    awsSecret: randomFrom(ALNUM, 40),
    blockedContent: 'BLOCKEDCANARY' + randomFrom(ALNUM, 24),
  };
}

export interface RecordedRequest {
  at: number;
  method: string;
  url: string;
  /** Header pairs exactly as received. */
  headers: Array<[string, string]>;
  body: Buffer;
}

export interface Chunk {
  at: number;
  bytes: Buffer;
}

/** A listener on this machine that keeps every byte it receives, decrypted when the peer spoke TLS. */
export interface Recorder {
  name: string;
  port: number;
  connections: number[];
  chunks: Chunk[];
  requests: RecordedRequest[];
  close(): Promise<void>;
}

export type Reply = (req: RecordedRequest, res: http.ServerResponse) => void;

/**
 * A fake upstream that answers HTTP and HTTPS on one port (sniffing the first byte) and records the raw
 * plaintext of every connection as well as each request its HTTP parser saw. Upgrades are recorded and, when the
 * Host names the blocked host, answered with its content, as a virtual-hosting server would.
 */
export async function startRecorder(name: string, pki: TestPki, reply: Reply): Promise<Recorder> {
  const connections: number[] = [];
  const chunks: Chunk[] = [];
  const requests: RecordedRequest[] = [];
  const sockets = new Set<net.Socket>();
  // A request without Host gets the default virtual host, as on many real servers (Node's default is a 400).
  const httpServer = http.createServer({ requireHostHeader: false }, (req, res) => {
    const body: Buffer[] = [];
    req.on('data', (c: Buffer) => body.push(c));
    req.on('error', () => {});
    req.on('end', () => {
      const pairs: Array<[string, string]> = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2) pairs.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
      const recorded = {
        at: Date.now(),
        method: req.method ?? '',
        url: req.url ?? '',
        headers: pairs,
        body: Buffer.concat(body),
      };
      requests.push(recorded);
      reply(recorded, res);
    });
  });
  httpServer.on('clientError', (_err, socket) => socket.destroy());
  httpServer.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const pairs: Array<[string, string]> = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) pairs.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
    requests.push({
      at: Date.now(),
      method: req.method ?? '',
      url: req.url ?? '',
      headers: pairs,
      body: Buffer.alloc(0),
    });
    socket.on('error', () => {});
    const key = req.headers['sec-websocket-key'];
    if ((req.url ?? '').includes('ws-real') && typeof key === 'string') {
      socket.end(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Accept: ${websocketAccept(key)}\r\n\r\n`,
      );
      return;
    }
    // A careless server: it says 101 without switching (no accept) and reads what follows as more requests,
    // each routed by its own Host — as a server speaking h2c would route each stream by its authority.
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${req.headers.upgrade ?? ''}\r\nConnection: Upgrade\r\n\r\n`,
    );
    httpServer.emit('connection', streamFrom(socket, head));
  });
  const secureContext = tls.createSecureContext({ cert: pki.certPem, key: pki.keyPem });
  const server = net.createServer((socket) => {
    sockets.add(socket);
    connections.push(Date.now());
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.once('data', (first: Buffer) => {
      // Everything goes through plain Duplexes: TLSSocket and the HTTP parser would otherwise read a native
      // handle directly, missing the sniffed first chunk and bypassing the recording.
      let stream: Duplex = streamFrom(socket, first);
      if (first[0] === 0x16) {
        const secure = new tls.TLSSocket(stream, { isServer: true, secureContext });
        secure.on('error', () => socket.destroy());
        stream = streamFrom(secure, Buffer.alloc(0));
      }
      stream.on('data', (bytes: Buffer) => chunks.push({ at: Date.now(), bytes }));
      httpServer.emit('connection', stream);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
  return {
    name,
    port: (server.address() as AddressInfo).port,
    connections,
    chunks,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * What a debug endpoint or an httpbin-like API does on `/api/echo*` and `/bucket/echo*`: reflect the request as it
 * arrived (with whatever real value the proxy put in) in a JSON body, in response headers, gzip-compressed whatever
 * was asked for, or five bytes at a time.
 */
function echoes(req: RecordedRequest, res: http.ServerResponse): boolean {
  const route = /^\/(?:api|bucket)\/(echo(?:-[a-z]+)?)(?:[/?]|$)/.exec(req.url)?.[1];
  if (route === undefined) return false;
  const doc = Buffer.from(JSON.stringify({ url: req.url, headers: req.headers }));
  if (route === 'echo-header') {
    const echoed = req.headers.filter(([n]) => n.toLowerCase() !== 'host').flatMap(([n, v]) => [`X-Echo-${n}`, v]);
    res.writeHead(200, echoed);
    res.end('ok');
  } else if (route === 'echo-gzip') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    res.end(gzipSync(doc));
  } else if (route === 'echo-chunked') {
    res.writeHead(200, { 'content-type': 'application/json' });
    let at = 0;
    const next = (): void => {
      if (at >= doc.length) return void res.end();
      res.write(doc.subarray(at, (at += 5)));
      setImmediate(next);
    };
    next();
  } else {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(doc);
  }
  return true;
}

/** Raw listeners a vector might try to reach directly: TCP, UDP, and DNS (port 53 when it can) on this machine's address. */
export interface RawListeners {
  tcpPort: number;
  udpPort: number;
  /**
   * Where the recording DNS listener is, as `upstream_dns` writes it: the address on port 53, or `address:port` on
   * another port when 53 cannot be bound (taken, or the tests run as a user, as in the rootless lane); null when
   * this machine has no address for it.
   */
  dnsAddress: string | null;
  /** Every datagram or connection received, with what it carried (and the name asked, for DNS over UDP). */
  received: Array<{ at: number; where: string; bytes: Buffer; name?: string }>;
  close(): Promise<void>;
}

/**
 * Names the recording resolver answers, as an attacker who owns an allowed name's DNS would: each points at an
 * address the proxy must refuse to connect to (its own loopback and "this host"), so a guard failure would still
 * only ever loop back into the proxy.
 */
export const HOSTILE_DNS: Record<string, string> = {
  'rebind-loopback.test': '127.0.0.1',
  'rebind-zero.test': '0.0.0.0',
  // This machine's own address (set when the fixture starts): a guard failure reaches the raw TCP listener.
  'rebind-host.test': '127.0.0.1',
  // How user-mode networking names the host to a rootless container: slirp4netns's host-loopback alias and the
  // address Podman 5 has pasta map to the host. Reaching either from the proxy is reaching the runner itself.
  'rebind-slirp-host.test': '10.0.2.2',
  'rebind-pasta-host.test': '169.254.1.2',
};

function dnsAnswer(query: Buffer): { name: string; reply: Buffer | null } {
  try {
    const packet = dnsPacket.decode(query);
    const question = packet.questions?.[0];
    const name = question?.name.toLowerCase() ?? '';
    const address = question?.type === 'A' ? HOSTILE_DNS[name] : undefined;
    const reply = dnsPacket.encode({
      id: packet.id,
      type: 'response',
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      questions: packet.questions,
      answers: address ? [{ type: 'A', name: question!.name, ttl: 60, data: address }] : [],
    });
    return { name, reply };
  } catch {
    return { name: '', reply: null };
  }
}

export async function startRawListeners(dnsAddress: string | null): Promise<RawListeners> {
  const received: RawListeners['received'] = [];
  const sockets = new Set<net.Socket>();
  const closers: Array<() => Promise<void>> = [];
  const tcpListener = async (host: string, port: number, where: string): Promise<number> => {
    const server = net.createServer((socket) => {
      sockets.add(socket);
      received.push({ at: Date.now(), where, bytes: Buffer.alloc(0) });
      socket.on('data', (bytes: Buffer) => received.push({ at: Date.now(), where, bytes }));
      socket.on('error', () => {});
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, resolve);
    });
    closers.push(() => new Promise<void>((r) => server.close(() => r())));
    return (server.address() as AddressInfo).port;
  };
  const udpListener = async (host: string, port: number, where: string): Promise<number> => {
    const socket = dgram.createSocket('udp4');
    socket.on('message', (bytes, from) => {
      if (where !== 'dns-udp') return void received.push({ at: Date.now(), where, bytes });
      const { name, reply } = dnsAnswer(bytes);
      received.push({ at: Date.now(), where, bytes, name });
      if (reply) socket.send(reply, from.port, from.address);
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(port, host, resolve);
    });
    closers.push(() => new Promise<void>((r) => socket.close(() => r())));
    return socket.address().port;
  };
  const tcpPort = await tcpListener('0.0.0.0', 0, 'tcp');
  const udpPort = await udpListener('0.0.0.0', 0, 'udp');
  let dns: string | null = null;
  if (dnsAddress) {
    try {
      await udpListener(dnsAddress, 53, 'dns-udp');
      await tcpListener(dnsAddress, 53, 'dns-tcp');
      dns = dnsAddress;
    } catch {
      // Never fall back to a real resolver: the proxy's upstream lookups must land here, on some port.
      for (let attempt = 0; attempt < 5 && dns === null; attempt++) {
        const port = await udpListener(dnsAddress, 0, 'dns-udp');
        dns = await tcpListener(dnsAddress, port, 'dns-tcp').then(
          () => `${dnsAddress}:${port}`,
          () => null,
        );
      }
    }
  }
  return {
    tcpPort,
    udpPort,
    dnsAddress: dns,
    received,
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all(closers.map((c) => c()));
    },
  };
}

/** This machine's own IPv4 addresses other than loopback: what "reaching the host" means from the sandbox. */
export function hostAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) out.push(a.address);
  }
  return out;
}

/** Podman always; Docker too when AIRLOCK_TEST_DOCKER=1, as in the container suite. */
export const ESCAPE_ENGINES: Array<'podman' | 'docker'> = [
  'podman',
  ...(process.env.AIRLOCK_TEST_DOCKER === '1' ? (['docker'] as const) : []),
];

export interface EscapeFixture {
  engine: 'podman' | 'docker';
  pki: TestPki;
  canaries: Canaries;
  workspace: string;
  /**
   * allowed.test (masked-secret scope), exfil.test (allowed, no scope), s3.aws.test (signing scope), blocked.test,
   * attacker.test, and ported.test, allowed only on the port it listens on (an allowlist entry names the port).
   */
  recorders: Record<'allowed' | 'exfil' | 'aws' | 'blocked' | 'attacker' | 'anthropic' | 'ported', Recorder>;
  raw: RawListeners;
  hostIps: string[];
  allowlistYaml: string;
  sandboxYaml: string;
  close(): Promise<void>;
}

/**
 * The policy every escape test runs under: allowed.test is open under /api/* and is the only host where the real
 * GH_TOKEN may go (Authorization only); exfil.test is an allowed host the attacker controls (a paste site, say);
 * s3.aws.test is where AWS requests are re-signed; blocked.test and attacker.test are not allowed at all.
 */
export async function startEscapeFixture(
  engine: 'podman' | 'docker',
  extraSandboxYaml: string[] = [],
): Promise<EscapeFixture> {
  const canaries = makeCanaries();
  const pki = await makeTestPki([
    'allowed.test',
    'exfil.test',
    's3.aws.test',
    'blocked.test',
    'attacker.test',
    'api.anthropic.com',
    'ported.test',
    'steer.test',
  ]);
  const hostIps = hostAddresses();
  const serve =
    (label: string): Reply =>
    (req, res) => {
      const host = (req.headers.find(([n]) => n.toLowerCase() === 'host')?.[1] ?? '').toLowerCase();
      // Virtual hosting: whichever server a request for blocked.test lands on hands out the blocked content.
      if (host.startsWith('blocked.test') || label === 'blocked') return void res.end(canaries.blockedContent);
      if (req.url.startsWith('/api/redirect')) {
        res.writeHead(302, { location: 'https://blocked.test/content' });
        return void res.end();
      }
      if (req.method === 'TRACE') {
        res.writeHead(200, { 'content-type': 'message/http' });
        return void res.end(req.headers.map(([n, v]) => `${n}: ${v}\r\n`).join(''));
      }
      if (echoes(req, res)) return;
      res.end(`${label}-ok\n`);
    };
  const recorders = {
    allowed: await startRecorder('allowed.test', pki, serve('allowed')),
    exfil: await startRecorder('exfil.test', pki, serve('exfil')),
    aws: await startRecorder('s3.aws.test', pki, serve('aws')),
    blocked: await startRecorder('blocked.test', pki, serve('blocked')),
    attacker: await startRecorder('attacker.test', pki, serve('attacker')),
    // Stands in for the Anthropic API (the name only; it is a local listener like the others).
    anthropic: await startRecorder('api.anthropic.com', pki, serve('anthropic')),
    ported: await startRecorder('ported.test', pki, serve('ported')),
  };
  const raw = await startRawListeners(hostIps[0] ?? null);
  if (hostIps[0]) HOSTILE_DNS['rebind-host.test'] = hostIps[0];
  const workspace = await mkdtemp(path.join(tmpdir(), 'airlock-escape-'));
  await mkdir(path.join(workspace, '.airlock'));
  await mkdir(path.join(workspace, 'probes'));
  for (const file of await readdir(probesDir))
    await copyFile(path.join(probesDir, file), path.join(workspace, 'probes', file));
  await writeFile(path.join(workspace, '.airlock/upstream-ca.pem'), pki.caPem);
  const sandboxYaml = [
    'upstream_ca_file: upstream-ca.pem',
    // A resolver that records: if the proxy ever forwarded a sandbox query, it would land here.
    ...(raw.dnsAddress ? [`upstream_dns: [${raw.dnsAddress}]`] : []),
    'upstream_hosts:',
    `  allowed.test: host-gateway:${recorders.allowed.port}`,
    `  exfil.test: host-gateway:${recorders.exfil.port}`,
    `  s3.aws.test: host-gateway:${recorders.aws.port}`,
    `  blocked.test: host-gateway:${recorders.blocked.port}`,
    `  attacker.test: host-gateway:${recorders.attacker.port}`,
    `  api.anthropic.com: host-gateway:${recorders.anthropic.port}`,
    // Mapped the documented way, without a port: the port is the one the sandbox connected to. steer.test is
    // only ever asked for on another port (attacker.test's) and must never get there.
    '  steer.test: host-gateway',
    '  ported.test: host-gateway',
    'masked_secrets:',
    '  GH_TOKEN:',
    '    value: !env GH_TOKEN',
    '    scopes: [allowed.test, steer.test]',
    '    headers: [Authorization]',
    'signing_credentials:',
    '  aws:',
    '    type: aws-sigv4',
    '    access_key_id: !env AWS_ACCESS_KEY_ID',
    '    secret_access_key: !env AWS_SECRET_ACCESS_KEY',
    '    scopes: [s3.aws.test]',
    'env:',
    `  HOST_IPS: "${hostIps.join(' ')}"`,
    `  ATTACK_TCP_PORT: "${raw.tcpPort}"`,
    `  ATTACK_UDP_PORT: "${raw.udpPort}"`,
    `  RECORDER_PORTS: "${Object.values(recorders)
      .map((r) => r.port)
      .join(' ')}"`,
    `  ATTACKER_PORT: "${recorders.attacker.port}"`,
    `  PORTED_PORT: "${recorders.ported.port}"`,
    ...extraSandboxYaml,
    '',
  ].join('\n');
  const allowlistYaml = [
    'domains:',
    '  - exfil.test',
    '  - s3.aws.test',
    '  - api.anthropic.com',
    '  - steer.test',
    // The proxy opens this port because the entry names it; on 443 or 80 ported.test is not allowed.
    `  - ported.test:${recorders.ported.port}`,
    ...Object.keys(HOSTILE_DNS).map((name) => `  - ${name}`),
    'url_prefixes:',
    '  - {host: allowed.test, path: /api/*}',
    '  - {host: allowed.test, path: /graphql, graphql: {queries: [viewer]}}',
    '',
  ].join('\n');
  await writeFile(path.join(workspace, '.airlock/sandbox.yaml'), sandboxYaml);
  await writeFile(path.join(workspace, '.airlock/network-allowlist.yaml'), allowlistYaml);
  return {
    engine,
    pki,
    canaries,
    workspace,
    recorders,
    raw,
    hostIps,
    allowlistYaml,
    sandboxYaml,
    close: async () => {
      await Promise.all(Object.values(recorders).map((r) => r.close()));
      await raw.close();
    },
  };
}

export interface SandboxRun {
  code: number;
  stdout: string;
  stderr: string;
  /** vector name → its outcome line. */
  results: Map<string, string>;
  /** vector name → [time its `begin:` line arrived, time its result line arrived]. */
  windows: Map<string, [number, number]>;
}

/**
 * Runs `airlock run -- bash -c SCRIPT` in the fixture's workspace with the real secrets in airlock's own
 * environment (as a CI runner would have them), timing each `begin:NAME` and `NAME=outcome` line as it arrives.
 */
export function runInSandbox(fixture: EscapeFixture, script: string, extraArgs: string[] = []): Promise<SandboxRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [entry, 'run', '--engine', fixture.engine, ...extraArgs, '--', 'bash', '-c', script],
      {
        cwd: fixture.workspace,
        env: {
          ...process.env,
          GH_TOKEN: fixture.canaries.ghToken,
          AWS_ACCESS_KEY_ID: fixture.canaries.awsKeyId,
          AWS_SECRET_ACCESS_KEY: fixture.canaries.awsSecret,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    let partial = '';
    const results = new Map<string, string>();
    const windows = new Map<string, [number, number]>();
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString('latin1');
      partial += d.toString('latin1');
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      const now = Date.now();
      for (const line of lines) {
        if (line.startsWith('begin:')) windows.set(line.slice(6), [now, Number.POSITIVE_INFINITY]);
        const eq = line.indexOf('=');
        if (eq > 0 && !line.startsWith('begin:')) {
          const name = line.slice(0, eq);
          results.set(name, line.slice(eq + 1));
          const w = windows.get(name);
          if (w) w[1] = now;
        }
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr, results, windows }));
  });
}

/** One thing a listener saw that breaks the policy, with when it happened. */
export interface Violation {
  at: number;
  what: string;
}

const REQUEST_LINE_OR_AUTH = /^(authorization):/i;

/**
 * Everything the listeners received that the policy forbids: any contact at all with blocked.test, attacker.test
 * or the raw listeners; the real GH_TOKEN anywhere but an Authorization header at allowed.test; the real AWS key
 * id anywhere but s3.aws.test; the real AWS secret anywhere; a request the proxy would have refused arriving at
 * an allowed host (smuggled past it).
 */
export function listenerViolations(fixture: EscapeFixture): Violation[] {
  const { recorders, canaries, raw } = fixture;
  const out: Violation[] = [];
  for (const r of [recorders.blocked, recorders.attacker]) {
    for (const at of r.connections) out.push({ at, what: `a connection reached ${r.name}` });
  }
  for (const x of raw.received) {
    // The proxy asking its resolver about an allowed, unmapped name is its job; anything else came from the sandbox.
    if (x.where === 'dns-udp' && x.name !== undefined && x.name in HOSTILE_DNS) continue;
    out.push({ at: x.at, what: `${x.where} listener received ${x.bytes.length} bytes${x.name ? ` (${x.name})` : ''}` });
  }
  for (const r of Object.values(recorders)) {
    for (const c of r.chunks) {
      if (containsSecret(c.bytes, canaries.awsSecret)) out.push({ at: c.at, what: `real AWS secret at ${r.name}` });
      if (r !== recorders.aws && containsSecret(c.bytes, canaries.awsKeyId)) {
        out.push({ at: c.at, what: `real AWS key id at ${r.name}` });
      }
      if (r !== recorders.allowed && containsSecret(c.bytes, canaries.ghToken)) {
        out.push({ at: c.at, what: `real GH_TOKEN at ${r.name}` });
      }
      // Every GraphQL vector but the positive control carries this field (the gzip one only compressed).
      if (c.bytes.includes('deleteRepository'))
        out.push({ at: c.at, what: `a refused GraphQL operation at ${r.name}` });
      // The tool-domain vectors ask Anthropic's server-side tools to reach attacker.test.
      if (r === recorders.anthropic && c.bytes.includes('attacker.test')) {
        out.push({ at: c.at, what: 'a tool configuration naming attacker.test reached api.anthropic.com' });
      }
    }
    for (const q of r.requests) {
      const host = q.headers.find(([n]) => n.toLowerCase() === 'host')?.[1] ?? '';
      if (r !== recorders.blocked && r !== recorders.attacker && !host.toLowerCase().startsWith(r.name)) {
        out.push({ at: q.at, what: `${r.name} received a request for Host ${JSON.stringify(host)} (${q.url})` });
      }
      // /graphql is allowed for the query `viewer` only: its one positive control. The recorder keeps every byte, so
      // a forwarded mutation would show up in the bytes it received.
      const graphqlControl = q.url === '/graphql' && q.method === 'POST';
      if (r === recorders.allowed && !q.url.startsWith('/api/') && !graphqlControl) {
        out.push({ at: q.at, what: `allowed.test received ${q.method} ${q.url}, outside /api/*` });
      }
      if (r === recorders.allowed) {
        const elsewhere = [
          q.method + ' ' + q.url,
          ...q.headers.filter(([n]) => !REQUEST_LINE_OR_AUTH.test(n + ':')).map(([n, v]) => `${n}: ${v}`),
          q.body.toString('latin1'),
        ].join('\n');
        if (containsSecret(elsewhere, canaries.ghToken)) {
          out.push({ at: q.at, what: `real GH_TOKEN outside Authorization at allowed.test (${q.url})` });
        }
      }
    }
  }
  return out.sort((a, b) => a.at - b.at);
}

/** Violations that happened while `vector` ran (with a little slack for the proxy's last bytes). */
export function violationsDuring(run: SandboxRun, vector: string, violations: Violation[]): Violation[] {
  const w = run.windows.get(vector);
  if (!w) return [];
  // Slack for the proxy's last bytes, but never into the next vector's time.
  const nextBegin = Math.min(...[...run.windows.values()].map(([b]) => b).filter((b) => b > w[0]));
  const end = Math.min(Number.isFinite(w[1]) ? w[1] + 250 : Number.POSITIVE_INFINITY, nextBegin);
  return violations.filter((v) => v.at >= w[0] - 50 && v.at <= end);
}

/**
 * Every file under `dir` (the sandbox's dump of its environment, /proc and root file system) holding a canary
 * the sandbox must never see, in any encoding.
 */
export async function canariesIn(dir: string, canaries: Canaries): Promise<string[]> {
  const found: string[] = [];
  const secrets: Array<[string, string]> = [
    ['GH_TOKEN real value', canaries.ghToken],
    ['AWS key id', canaries.awsKeyId],
    ['AWS secret', canaries.awsSecret],
    ['blocked content', canaries.blockedContent],
  ];
  const walk = async (p: string): Promise<void> => {
    const s = await stat(p);
    if (s.isDirectory()) {
      for (const e of await readdir(p)) await walk(path.join(p, e));
      return;
    }
    if (!s.isFile()) return;
    const bytes = await readFile(p);
    for (const [label, secret] of secrets) if (containsSecret(bytes, secret)) found.push(`${label} in ${p}`);
  };
  await walk(dir);
  return found;
}

/**
 * The shell lines that dump what a sandboxed program can read about itself into the workspace, for the host to
 * search: its environment, every process's environ and cmdline, and the root file system outside the host's /usr
 * and the workspace.
 */
export function dumpScript(dir: string): string {
  return [
    `mkdir -p ${dir}`,
    `env > ${dir}/env.txt`,
    `for p in /proc/[0-9]*; do cat $p/environ $p/cmdline 2>/dev/null; echo; done > ${dir}/proc.txt`,
    `tar -cf ${dir}/rootfs.tar --exclude=./usr --exclude=./proc --exclude=./sys --exclude=./dev --exclude=./workspace -C / . 2>/dev/null; true`,
    `ls -la ${dir} >/dev/null`,
  ].join('\n');
}

/** Vector name → the only outcome the sandbox may print for it, and why that is what stops it. */
export type VectorTable = Record<string, { expect: string | RegExp; why: string }>;

/**
 * The batch ran to its end, and one `it` per vector: its outcome is the one the sandbox promises, and no listener
 * saw anything it must not while that vector ran. `batch` is read when the tests run (after `before`).
 */
export function vectorTests(vectors: VectorTable, batch: () => { fixture: EscapeFixture; run: SandboxRun }): void {
  it('the batch ran to the end', () => {
    const { run } = batch();
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.results.size, Object.keys(vectors).length, run.stdout);
  });
  for (const [name, { expect, why }] of Object.entries(vectors)) {
    it(`${name}: ${why}`, () => {
      const { fixture, run } = batch();
      const outcome = run.results.get(name);
      if (typeof expect === 'string') assert.equal(outcome, expect, `${name} printed ${outcome}`);
      else assert.match(outcome ?? '', expect);
      assert.deepEqual(violationsDuring(run, name, listenerViolations(fixture)), []);
    });
  }
}

export async function removeEscapeFixture(fixture: EscapeFixture | undefined): Promise<void> {
  if (!fixture) return;
  await fixture.close();
  await rm(fixture.workspace, { recursive: true, force: true });
}
