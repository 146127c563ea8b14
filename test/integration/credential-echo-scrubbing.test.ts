import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import zlib from 'node:zlib';
import WebSocket, { WebSocketServer } from 'ws';
import { randomString } from '../../src/protocol/surrogate.js';
import { formatAmzDate } from '../../src/proxy/credentials/aws/resign.js';
import { createCredentialProcessor } from '../../src/proxy/credentials/index.js';
import { formatJsonLine, formatTextLine } from '../../src/proxy/log/network-log.js';
import { clientSign, s3GetInput } from '../helpers/aws-client-signer.js';
import { containsSecret } from '../helpers/secret-forms.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';
import { startProxyFixture, type ProxyFixture } from '../helpers/upstream.js';

/**
 * Issue 13, finding 4: a host where the proxy injected a real credential may echo the request back (debug
 * endpoints, error pages, httpbin-like APIs). Whatever it echoes — in the body, a header, the status line, gzip-,
 * deflate- or brotli-compressed, chunked into tiny pieces, in a WebSocket handshake — the sandbox must see only what
 * it sent (the surrogate), never the real value in any encoding. Real proxy, real TLS, real sockets.
 */

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const UPPER_DIGITS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

const ECHO = 'echo.test';
const AWS = 's3.echo.test';
const OTHER = 'other.test';

/** Fresh per run, so nothing in the repository could make a leak check pass by accident. */
const GH = { real: `ghp_${randomString(36, ALNUM)}`, surrogate: `ghp_${randomString(36, ALNUM)}` };
const AWS_KEY = { real: `AKIA${randomString(16, UPPER_DIGITS)}`, surrogate: `AKIA${randomString(16, UPPER_DIGITS)}` };
const AWS_SECRET = { real: randomString(40, ALNUM), surrogate: randomString(40, ALNUM) };
/** Real session tokens are base64 with `/`, `+` and `=`: their query form differs from the raw one. */
const AWS_TOKEN = {
  real: `FwoGZXIvYXdzE/+${Buffer.from(randomString(300, ALNUM)).toString('base64')}`,
  surrogate: randomString(512, ALNUM),
};
const REALS = [GH.real, AWS_KEY.real, AWS_SECRET.real, AWS_TOKEN.real];

let fx: ProxyFixture;
let echo: EchoServer;

interface EchoServer {
  port: number;
  /** Every request head as the upstream received it (what the proxy really sent). */
  received: Array<{ method: string; url: string; headers: Array<[string, string]> }>;
  close(): Promise<void>;
}

function pairs(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

function headerOf(headers: ReadonlyArray<[string, string]>, name: string): string | undefined {
  return headers.find(([n]) => n.toLowerCase() === name)?.[1];
}

/** What an httpbin-like endpoint answers: the request as it arrived, Basic credentials decoded. */
function echoDocument(req: IncomingMessage): Buffer {
  const headers = pairs(req.rawHeaders);
  const auth = headerOf(headers, 'authorization') ?? '';
  const basic = /^Basic (\S+)$/i.exec(auth);
  return Buffer.from(
    JSON.stringify({
      method: req.method,
      url: req.url,
      headers,
      basic: basic ? Buffer.from(basic[1]!, 'base64').toString('utf8') : null,
    }),
  );
}

const COMPRESSORS: Record<string, (b: Buffer) => Buffer> = {
  gzip: (b) => zlib.gzipSync(b),
  deflate: (b) => zlib.deflateSync(b),
  br: (b) => zlib.brotliCompressSync(b),
};

async function writeSlowly(res: ServerResponse, body: Buffer, piece: number): Promise<void> {
  for (let at = 0; at < body.length; at += piece) {
    res.write(body.subarray(at, at + piece));
    await new Promise((resolve) => setImmediate(resolve));
  }
  res.end();
}

/** Routes by the first path segment; every one of them reflects the request somewhere in its answer. */
function answer(req: IncomingMessage, res: ServerResponse): void {
  const route = (req.url ?? '/').split(/[/?]/)[1] ?? '';
  const doc = echoDocument(req);
  const headers = pairs(req.rawHeaders);
  switch (route) {
    case 'header': {
      const echoed = headers.filter(([n]) => n.toLowerCase() !== 'host').map(([n, v]) => [`X-Echo-${n}`, v]);
      res.writeHead(200, headerOf(headers, 'authorization') ?? 'OK', [
        ...echoed.flat(),
        'Set-Cookie',
        `seen=${encodeURIComponent(headerOf(headers, 'authorization') ?? '')}`,
        'Content-Length',
        '2',
      ]);
      return void res.end('ok');
    }
    case 'gzip':
    case 'deflate':
    case 'br': {
      const body = COMPRESSORS[route]!(doc);
      res.writeHead(200, {
        'Content-Type': 'application/json',
        'Content-Encoding': route,
        'Content-Length': body.length,
      });
      return void res.end(body);
    }
    case 'negotiated': {
      const gzip = /gzip/.test(headerOf(headers, 'accept-encoding') ?? '');
      const body = gzip ? zlib.gzipSync(doc) : doc;
      res.writeHead(200, { 'Content-Type': 'application/json', ...(gzip ? { 'Content-Encoding': 'gzip' } : {}) });
      return void res.end(body);
    }
    case 'zstd':
      // Not zstd at all: if the proxy passed it through, the client would read the real value in clear.
      res.writeHead(200, { 'Content-Encoding': 'zstd', 'Content-Length': doc.length });
      return void res.end(doc);
    case 'chunked':
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return void writeSlowly(res, doc, 3);
    case 'large': {
      // Megabytes of filler with the request echoed at the start, in the middle and at the very end.
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      const filler = Buffer.alloc(64 * 1024, 'x');
      res.write(doc);
      for (let i = 0; i < 32; i++) res.write(filler);
      res.write(doc);
      for (let i = 0; i < 32; i++) res.write(filler);
      return void res.end(doc);
    }
    default:
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': doc.length });
      return void res.end(doc);
  }
}

async function startEchoServer(pki: { certPem: string; keyPem: string }): Promise<EchoServer> {
  const received: EchoServer['received'] = [];
  const server = https.createServer({ cert: pki.certPem, key: pki.keyPem, maxHeaderSize: 64 * 1024 });
  const record = (req: IncomingMessage) =>
    received.push({ method: req.method ?? '', url: req.url ?? '', headers: pairs(req.rawHeaders) });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    record(req);
    req.resume();
    req.on('end', () => answer(req, res));
  });
  const wss = new WebSocketServer({ noServer: true });
  // A handshake that reflects the request's credential in a response header of the 101.
  wss.on('headers', (headers, req) => headers.push(`X-Echo-Authorization: ${req.headers.authorization ?? ''}`));
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    record(req);
    if (req.url === '/ws') return void wss.handleUpgrade(req, socket, head, (ws) => ws.close());
    const doc = echoDocument(req);
    socket.write(`HTTP/1.1 401 ${req.headers.authorization}\r\nContent-Length: ${doc.length}\r\n\r\n`);
    socket.end(doc);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

interface Seen {
  status: number;
  statusMessage: string;
  headers: Array<[string, string]>;
  /** The body as the client's HTTP stack hands it over (de-chunked), and decoded if Content-Encoding says so. */
  body: Buffer;
}

const DECOMPRESSORS: Record<string, (b: Buffer) => Buffer> = {
  gzip: (b) => zlib.gunzipSync(b),
  deflate: (b) => zlib.inflateSync(b),
  br: (b) => zlib.brotliDecompressSync(b),
};

/** A request as the sandbox sends it, and everything it gets back. */
function fetchVia(host: string, target: string, headers: Array<[string, string]>, method = 'GET'): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1',
      port: fx.proxy.addresses.https,
      servername: host,
      ca: fx.runCa.certPem,
      method,
      path: target,
      headers: ['Host', host, 'Accept-Encoding', 'gzip, deflate, br', ...headers.flat()],
      agent: false,
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        const coding = res.headers['content-encoding'];
        const decode = coding === undefined ? null : DECOMPRESSORS[coding];
        resolve({
          status: res.statusCode ?? 0,
          statusMessage: res.statusMessage ?? '',
          headers: pairs(res.rawHeaders),
          body: decode ? decode(raw) : raw,
        });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Every real value, in every encoding a detector knows, anywhere the sandbox could read it. */
function leaksIn(seen: Seen): string[] {
  const text = [seen.statusMessage, ...seen.headers.map(([n, v]) => `${n}: ${v}`), seen.body.toString('latin1')];
  return REALS.filter((real) => containsSecret(text.join('\n'), real)).map((real) => real.slice(0, 6) + '…');
}

function echoed(seen: Seen): { url: string; headers: Array<[string, string]>; basic: string | null } {
  return JSON.parse(seen.body.toString('utf8')) as { url: string; headers: Array<[string, string]>; basic: string };
}

function lastReceived(path: string) {
  const found = echo.received.findLast((r) => r.url.startsWith(path));
  assert.ok(found, `the upstream received ${path}`);
  return found;
}

function logLinesFor(path: string): string[] {
  return fx.log.events.map(formatTextLine).filter((line) => line.includes(path));
}

const bearer = (token: string): Array<[string, string]> => [['Authorization', `Bearer ${token}`]];
const basicBlob = (userPass: string, padded = true): string => {
  const b64 = Buffer.from(userPass).toString('base64');
  return padded ? b64 : b64.replace(/=+$/, '');
};

before(async () => {
  const pki = await makeTestPki([ECHO, AWS, OTHER]);
  echo = await startEchoServer(pki);
  fx = await startProxyFixture({
    allowlist: { domains: [ECHO, AWS, OTHER] },
    credentials: createCredentialProcessor({
      masked: [
        {
          name: 'GH_TOKEN',
          surrogate: GH.surrogate,
          value: GH.real,
          scopes: [ECHO],
          headers: ['Authorization'],
          allowForeignCredentials: false,
        },
      ],
      signing: [
        {
          name: 'aws',
          type: 'aws-sigv4',
          surrogateAccessKeyId: AWS_KEY.surrogate,
          surrogateSecretAccessKey: AWS_SECRET.surrogate,
          accessKeyId: AWS_KEY.real,
          secretAccessKey: AWS_SECRET.real,
          surrogateSessionToken: AWS_TOKEN.surrogate,
          sessionToken: AWS_TOKEN.real,
          scopes: [AWS],
        },
      ],
    }),
    upstream: {
      caPem: pki.caPem,
      hosts: Object.fromEntries([ECHO, AWS, OTHER].map((h) => [h, `127.0.0.1:${echo.port}`])),
    },
  });
});

after(async () => {
  await fx.close();
  await echo.close();
});

void describe(
  'a scoped host that echoes the request never hands the sandbox the real value',
  { timeout: 60_000 },
  () => {
    void it('positive control: the real value did reach the upstream (so an echo would carry it)', async () => {
      await fetchVia(ECHO, '/body?control', bearer(GH.surrogate));
      assert.equal(headerOf(lastReceived('/body?control').headers, 'authorization'), `Bearer ${GH.real}`);
    });

    void it('echoed in a JSON body: the sandbox reads back the surrogate it sent; [scrubbed: 1] is logged', async () => {
      const seen = await fetchVia(ECHO, '/body?bearer', bearer(GH.surrogate));
      assert.equal(seen.status, 200);
      assert.deepEqual(leaksIn(seen), []);
      assert.equal(headerOf(echoed(seen).headers, 'authorization'), `Bearer ${GH.surrogate}`);
      // Same length: the length the upstream announced is still right, and kept.
      assert.equal(headerOf(seen.headers, 'content-length'), String(seen.body.length));
      assert.deepEqual(logLinesFor('/body?bearer'), [
        `ALLOWED GET https://${ECHO}/body?bearer -> 200 [masked: 1] [scrubbed: 1]`,
      ]);
    });

    for (const padded of [true, false]) {
      void it(`Basic credentials (${padded ? 'padded' : 'unpadded'} base64): the whole blob and the decoded token map back`, async () => {
        const sent = basicBlob(`x-access-token:${GH.surrogate}`, padded);
        const path = `/body?basic-${padded}`;
        const seen = await fetchVia(ECHO, path, [['Authorization', `Basic ${sent}`]]);
        assert.deepEqual(leaksIn(seen), []);
        assert.equal(
          headerOf(lastReceived(path).headers, 'authorization'),
          `Basic ${basicBlob(`x-access-token:${GH.real}`)}`,
        );
        const doc = echoed(seen);
        assert.equal(headerOf(doc.headers, 'authorization'), `Basic ${sent}`, 'exactly the blob the sandbox sent');
        assert.equal(doc.basic, `x-access-token:${GH.surrogate}`);
        // The unpadded blob is shorter than the one sent upstream: the body changes length and goes chunked.
        if (!padded) assert.equal(headerOf(seen.headers, 'content-length'), undefined);
        assert.match(logLinesFor(path)[0] ?? '', /\[scrubbed: 2\]$/);
      });
    }

    void it('echoed in response headers and the status line', async () => {
      const seen = await fetchVia(ECHO, '/header', bearer(GH.surrogate));
      assert.equal(seen.status, 200);
      assert.deepEqual(leaksIn(seen), []);
      assert.equal(seen.statusMessage, `Bearer ${GH.surrogate}`);
      assert.equal(headerOf(seen.headers, 'x-echo-authorization'), `Bearer ${GH.surrogate}`);
      assert.equal(headerOf(seen.headers, 'set-cookie'), `seen=${encodeURIComponent(`Bearer ${GH.surrogate}`)}`);
    });

    void it('echoed three bytes at a time, across many chunks', async () => {
      const seen = await fetchVia(ECHO, '/chunked', bearer(GH.surrogate));
      assert.deepEqual(leaksIn(seen), []);
      assert.equal(headerOf(echoed(seen).headers, 'authorization'), `Bearer ${GH.surrogate}`);
    });

    void it('megabytes of body with the echo at the start, the middle and the end: only the value changes', async () => {
      const seen = await fetchVia(ECHO, '/large', bearer(GH.surrogate));
      assert.deepEqual(leaksIn(seen), []);
      const doc = Buffer.from(seen.body.subarray(0, seen.body.indexOf('}') + 1));
      assert.equal(headerOf(JSON.parse(doc.toString()).headers, 'authorization'), `Bearer ${GH.surrogate}`);
      const filler = Buffer.alloc(32 * 64 * 1024, 'x');
      const expected = createHash('sha256')
        .update(Buffer.concat([doc, filler, doc, filler, doc]))
        .digest('hex');
      assert.equal(createHash('sha256').update(seen.body).digest('hex'), expected);
    });

    void it('a request carrying a real value asks the upstream for an uncompressed answer', async () => {
      const seen = await fetchVia(ECHO, '/negotiated', bearer(GH.surrogate));
      assert.equal(headerOf(lastReceived('/negotiated').headers, 'accept-encoding'), 'identity');
      assert.equal(headerOf(seen.headers, 'content-encoding'), undefined);
      assert.deepEqual(leaksIn(seen), []);
    });

    for (const coding of ['gzip', 'deflate', 'br']) {
      void it(`an upstream that compresses anyway (${coding}) is decoded, scrubbed and re-encoded`, async () => {
        const seen = await fetchVia(ECHO, `/${coding}`, bearer(GH.surrogate));
        assert.equal(seen.status, 200);
        assert.equal(headerOf(seen.headers, 'content-encoding'), coding);
        assert.deepEqual(leaksIn(seen), []);
        assert.equal(headerOf(echoed(seen).headers, 'authorization'), `Bearer ${GH.surrogate}`);
      });
    }

    void it('a coding the proxy cannot undo is refused with a 502 that names it, never passed through', async () => {
      const seen = await fetchVia(ECHO, '/zstd', bearer(GH.surrogate));
      assert.equal(seen.status, 502);
      assert.deepEqual(leaksIn(seen), []);
      const body = JSON.parse(seen.body.toString()) as { error: string; reason: string };
      assert.equal(body.error, 'upstream_error');
      assert.match(body.reason, /zstd/);
    });

    void it('HEAD: headers are scrubbed, the announced length is left alone', async () => {
      const seen = await fetchVia(ECHO, '/body?head', bearer(GH.surrogate), 'HEAD');
      assert.equal(seen.status, 200);
      assert.deepEqual(leaksIn(seen), []);
      assert.notEqual(headerOf(seen.headers, 'content-length'), undefined);
    });

    void it('a WebSocket handshake that reflects the credential in its 101', async () => {
      const ws = new WebSocket(`wss://127.0.0.1:${fx.proxy.addresses.https}/ws`, {
        ca: fx.runCa.certPem,
        servername: ECHO,
        headers: { Host: ECHO, Authorization: `Bearer ${GH.surrogate}` },
      } as WebSocket.ClientOptions);
      const upgrade = await new Promise<IncomingMessage>((resolve, reject) => {
        ws.once('upgrade', resolve);
        ws.once('error', reject);
      });
      ws.terminate();
      assert.equal(headerOf(lastReceived('/ws').headers, 'authorization'), `Bearer ${GH.real}`);
      assert.equal(upgrade.headers['x-echo-authorization'], `Bearer ${GH.surrogate}`);
      const text = upgrade.rawHeaders.join('\n') + upgrade.statusMessage;
      assert.ok(!containsSecret(text, GH.real));
    });

    void it('a refused upgrade whose answer reflects the credential', async () => {
      const ws = new WebSocket(`wss://127.0.0.1:${fx.proxy.addresses.https}/ws-declined`, {
        ca: fx.runCa.certPem,
        servername: ECHO,
        headers: { Host: ECHO, Authorization: `Bearer ${GH.surrogate}` },
      } as WebSocket.ClientOptions);
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        ws.once('unexpected-response', (_req, r) => resolve(r));
        ws.once('error', reject);
      });
      const chunks: Buffer[] = [];
      for await (const c of res) chunks.push(c as Buffer);
      ws.terminate();
      const seen: Seen = {
        status: res.statusCode ?? 0,
        statusMessage: res.statusMessage ?? '',
        headers: pairs(res.rawHeaders),
        body: Buffer.concat(chunks),
      };
      assert.equal(seen.status, 401);
      assert.deepEqual(leaksIn(seen), []);
      assert.equal(seen.statusMessage, `Bearer ${GH.surrogate}`);
    });

    void it('a host without an injected credential takes the untouched path (no rewrite, no annotation)', async () => {
      const seen = await fetchVia(OTHER, '/gzip?oos', bearer(GH.surrogate));
      assert.equal(headerOf(lastReceived('/gzip?oos').headers, 'accept-encoding'), 'gzip, deflate, br');
      assert.equal(headerOf(echoed(seen).headers, 'authorization'), `Bearer ${GH.surrogate}`);
      assert.deepEqual(logLinesFor('/gzip?oos'), [`ALLOWED GET https://${OTHER}/gzip?oos -> 200`]);
    });
  },
);

function signedForAws(mode: 'header' | 'query', path: string) {
  return clientSign(
    s3GetInput({
      mode,
      path,
      headers: [['Host', AWS]],
      accessKeyId: AWS_KEY.surrogate,
      secretAccessKey: AWS_SECRET.surrogate,
      sessionToken: AWS_TOKEN.surrogate,
      amzDate: formatAmzDate(new Date()),
    }),
  );
}

void describe(
  'AWS re-signing: the real key id, session token and signature are mapped back',
  { timeout: 60_000 },
  () => {
    void it('a header-signed request echoed in the body and in headers', async () => {
      for (const route of ['/body', '/header']) {
        const signed = signedForAws('header', `${route}/bucket/key`);
        const seen = await fetchVia(
          AWS,
          signed.target,
          signed.headers.filter(([n]) => n.toLowerCase() !== 'host'),
        );
        const upstream = lastReceived(`${route}/bucket/key`).headers;
        assert.ok(headerOf(upstream, 'authorization')?.includes(AWS_KEY.real), 'positive control: re-signed');
        assert.equal(headerOf(upstream, 'x-amz-security-token'), AWS_TOKEN.real);
        assert.deepEqual(leaksIn(seen), []);
        const reflected =
          route === '/body'
            ? echoed(seen).headers
            : seen.headers.map(([n, v]): [string, string] => [n.replace(/^X-Echo-/i, ''), v]);
        assert.equal(
          headerOf(reflected, 'authorization'),
          headerOf(signed.headers, 'authorization'),
          'its own signature',
        );
        assert.equal(headerOf(reflected, 'x-amz-security-token'), AWS_TOKEN.surrogate);
        // The session token's surrogate is longer than the real one: any body may change length, so it is re-framed.
        assert.equal(headerOf(seen.headers, 'content-length'), undefined);
      }
      const line = logLinesFor(`/body/bucket/key`)[0] ?? '';
      assert.match(line, /-> 200 \[resigned\] \[region: us-east-1\] \[scrubbed: 3\]$/);
    });

    void it('a presigned URL echoed back is the URL the sandbox sent', async () => {
      const signed = signedForAws('query', '/body/bucket/presigned');
      const seen = await fetchVia(AWS, signed.target, []);
      const upstreamUrl = lastReceived('/body/bucket/presigned').url;
      assert.ok(upstreamUrl.includes(AWS_KEY.real) && upstreamUrl.includes(encodeURIComponent(AWS_TOKEN.real)));
      assert.deepEqual(leaksIn(seen), []);
      assert.equal(echoed(seen).url, signed.target);
    });
  },
);

void describe('nothing real in the log', { timeout: 10_000 }, () => {
  void it('neither rendering of any event holds a real value in any encoding', () => {
    const rendered = fx.log.events.map((e) => formatTextLine(e) + '\n' + formatJsonLine(e)).join('\n');
    assert.ok(rendered.includes('scrubbed: '), 'the log saw the scrubbed responses');
    for (const real of REALS) assert.ok(!containsSecret(rendered, real), `${real.slice(0, 6)}… in the network log`);
  });
});
