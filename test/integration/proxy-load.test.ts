import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { EVENT_LINE_PREFIX as EVENT_PREFIX } from '../../src/protocol/proxy-wire.js';
import { openProcessLog } from '../../src/proxy/log/file-sinks.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';
import { startProxyFixture } from '../helpers/upstream.js';

/**
 * Under concurrent keep-alive load the proxy stays correct and bounded: 200 TLS connections, a mix of allowed and
 * refused requests (unknown host, path outside the allowlist, method outside it with a body to drain), three equal
 * batches: the first warms up (compiled code, TLS session and certificate caches, pools grow by ~2 MB and then stay),
 * the other two are compared. Every allowed request is answered 200 by the upstream, every refused one 403 by the proxy and never
 * seen upstream, each logged once through the production event-line writer, and the live heap after the second
 * batch is no larger than after the first, both measured in the same state (all connections idle) after full
 * collections. The sustained load (1,000 connections, 100,000 requests, throughput, RSS) is a benchmark:
 * `npx tsx bench/proxy-load.ts`.
 */

const CONNECTIONS = 200;
const REQUESTS_PER_BATCH = 1000;
/** A per-request leak of ~1 KB over one batch exceeds this; collection noise between two idle states (±0.3 MB) does not. */
const HEAP_MARGIN_BYTES = 1024 * 1024;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function liveHeap(): Promise<number> {
  // Twice, with a turn of the event loop between: closed sockets finish tearing down before the second.
  gc();
  await new Promise((r) => setImmediate(r));
  gc();
  return process.memoryUsage().heapUsed;
}

interface Kind {
  host: string;
  method: string;
  path: string;
  body?: Buffer;
  allowed: boolean;
}

/** Worker n sends KINDS[n % KINDS.length] over its own keep-alive connection. */
const KINDS: Kind[] = [
  { host: 'load.test', method: 'GET', path: '/small', allowed: true },
  { host: 'api.test', method: 'GET', path: '/v1/items', allowed: true },
  { host: 'blocked.test', method: 'GET', path: '/small', allowed: false },
  { host: 'api.test', method: 'GET', path: '/v2/items', allowed: false },
  { host: 'api.test', method: 'POST', path: '/v1/items', body: Buffer.alloc(4096, 'b'), allowed: false },
  { host: 'load.test', method: 'GET', path: '/small', allowed: true },
];

void test(
  `${CONNECTIONS} connections, ${3 * REQUESTS_PER_BATCH} allowed and refused requests: all answered, no refusal reaches upstream, heap flat`,
  { timeout: 120_000 },
  async (t) => {
    const pki = await makeTestPki(['load.test', 'api.test', 'blocked.test']);
    // The upstream counts what reaches it in a bounded map, so it adds nothing per request to the heap.
    const reached = new Map<string, number>();
    const upstream = https.createServer(
      { cert: pki.certPem, key: pki.keyPem, keepAliveTimeout: 60_000 },
      (req, res) => {
        const key = `${req.method} ${req.headers.host} ${req.url}`;
        reached.set(key, (reached.get(key) ?? 0) + 1);
        req.resume();
        res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 2 });
        res.end('ok');
      },
    );
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    const upstreamAt = `127.0.0.1:${(upstream.address() as AddressInfo).port}`;

    const logged = { allowed: 0, blocked: 0, other: 0 };
    const log = openProcessLog(
      { stdout: true },
      {
        write(chunk: string) {
          // Lines arrive batched, several per write.
          for (const line of chunk.split('\n')) {
            if (line === '') continue;
            const record = JSON.parse(line.slice(EVENT_PREFIX.length).split('\t')[0]!) as {
              event: string;
              decision?: string;
            };
            if (record.event === 'start') continue;
            if (record.decision === 'allowed') logged.allowed++;
            else if (record.decision === 'blocked') logged.blocked++;
            else logged.other++;
          }
        },
      },
    );
    const fx = await startProxyFixture({
      allowlist: {
        domains: ['load.test'],
        url_prefixes: [{ host: 'api.test', path: '/v1/*', methods: ['GET'] }],
      },
      // Every name, refused ones included, maps to the upstream: a refusal that leaked would really arrive there.
      upstream: {
        caPem: pki.caPem,
        hosts: { 'load.test': upstreamAt, 'api.test': upstreamAt, 'blocked.test': upstreamAt },
      },
      log,
    });
    const agents = Array.from(
      { length: CONNECTIONS },
      () => new https.Agent({ keepAlive: true, maxSockets: 1, ca: fx.runCa.certPem }),
    );
    const answers = { ok: 0, refused: 0, wrong: [] as string[], errors: [] as string[] };
    const sent = { allowed: 0, refused: 0 };
    const one = (worker: number) =>
      new Promise<void>((resolve) => {
        const kind = KINDS[worker % KINDS.length]!;
        if (kind.allowed) sent.allowed++;
        else sent.refused++;
        const req = https.request(
          {
            host: '127.0.0.1',
            port: fx.proxy.addresses.https,
            servername: kind.host,
            method: kind.method,
            path: kind.path,
            headers: { Host: kind.host, ...(kind.body ? { 'Content-Length': kind.body.length } : {}) },
            agent: agents[worker],
          },
          (res) => {
            res.resume();
            res.on('end', () => {
              const expected = kind.allowed ? 200 : 403;
              if (res.statusCode === expected) {
                if (kind.allowed) answers.ok++;
                else answers.refused++;
              } else if (answers.wrong.length < 5) {
                answers.wrong.push(`${kind.method} ${kind.host}${kind.path} -> ${res.statusCode}`);
              }
              resolve();
            });
          },
        );
        req.on('error', (e) => {
          if (answers.errors.length < 5) answers.errors.push(`${kind.method} ${kind.host}${kind.path}: ${e.message}`);
          resolve();
        });
        req.end(kind.body);
      });
    const batch = async () => {
      const perWorker = REQUESTS_PER_BATCH / CONNECTIONS;
      await Promise.all(
        Array.from({ length: CONNECTIONS }, async (_, worker) => {
          for (let i = 0; i < perWorker; i++) await one(worker);
        }),
      );
    };
    try {
      const started = performance.now();
      await batch();
      await batch();
      const afterSecondBatch = await liveHeap();
      await batch();
      const afterThirdBatch = await liveHeap();
      const seconds = (performance.now() - started) / 1000;
      const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
      t.diagnostic(
        `${sent.allowed + sent.refused} requests in ${seconds.toFixed(1)} s; live heap ${mb(afterSecondBatch)} MB after the ` +
          `second batch, ${mb(afterThirdBatch)} MB after the third`,
      );

      assert.deepEqual(answers.errors, [], 'connection errors');
      assert.deepEqual(answers.wrong, [], 'answers with the wrong status');
      assert.equal(answers.ok, sent.allowed);
      assert.equal(answers.refused, sent.refused);
      const refusedKinds = KINDS.filter((k) => !k.allowed).map((k) => `${k.method} ${k.host} ${k.path}`);
      for (const key of refusedKinds)
        assert.equal(reached.get(key), undefined, `a refused request reached upstream: ${key}`);
      assert.equal(
        [...reached.values()].reduce((a, b) => a + b, 0),
        sent.allowed,
        'upstream saw a different count',
      );
      // Lines still held for the next batched write (at most 10 ms) go out now, as they do at the end of a run.
      log.flush();
      assert.deepEqual(logged, { allowed: sent.allowed, blocked: sent.refused, other: 0 }, 'one log line per request');
      assert.ok(
        afterThirdBatch - afterSecondBatch <= HEAP_MARGIN_BYTES,
        `live heap grew by ${mb(afterThirdBatch - afterSecondBatch)} MB over ${REQUESTS_PER_BATCH} requests`,
      );
    } finally {
      for (const agent of agents) agent.destroy();
      await fx.close();
      await log.close();
      await new Promise<void>((resolve) => {
        upstream.close(() => resolve());
        upstream.closeAllConnections();
      });
    }
  },
);
