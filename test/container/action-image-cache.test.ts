import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureTestImage, TEST_IMAGE } from '../helpers/images.js';
import * as runner from './action-runner.js';

/**
 * The action's image cache against a local stand-in for the Actions cache service (the v1 protocol @actions/cache
 * speaks when ACTIONS_CACHE_URL is set), on 127.0.0.1: a first run misses, saves the images with `airlock image save`
 * and uploads them under content-hash keys; a second run restores and loads them instead.
 */

interface CacheEntry {
  key: string;
  version: string;
  chunks: Buffer[];
  committed: boolean;
  size: number;
}

interface FakeCacheService {
  url: string;
  entries: CacheEntry[];
  lookups: string[];
  close(): Promise<void>;
}

function body(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

async function startCacheService(): Promise<FakeCacheService> {
  const entries: CacheEntry[] = [];
  const lookups: string[] = [];
  let base = '';
  const server: Server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const data = await body(req);
      const json = (status: number, value: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
      };
      const id = /\/caches\/(\d+)$/.exec(url.pathname);
      if (req.method === 'GET' && url.pathname.endsWith('/_apis/artifactcache/cache')) {
        const keys = (url.searchParams.get('keys') ?? '').split(',');
        const version = url.searchParams.get('version') ?? '';
        lookups.push(...keys);
        const hit = entries.find((e) => e.committed && e.version === version && keys.includes(e.key));
        if (!hit) return void res.writeHead(204).end();
        return json(200, { cacheKey: hit.key, archiveLocation: `${base}blob/${entries.indexOf(hit)}` });
      }
      if (req.method === 'POST' && url.pathname.endsWith('/_apis/artifactcache/caches')) {
        const { key, version } = JSON.parse(data.toString()) as { key: string; version: string };
        if (entries.some((e) => e.key === key && e.version === version)) return json(409, { message: 'exists' });
        entries.push({ key, version, chunks: [], committed: false, size: 0 });
        return json(201, { cacheId: entries.length }); // ids start at 1: the client treats 0 as no id
      }
      if (req.method === 'PATCH' && id) {
        const start = Number(/bytes (\d+)-/.exec(String(req.headers['content-range']))?.[1] ?? 0);
        entries[Number(id[1]) - 1]!.chunks[start] = data;
        return void res.writeHead(204).end();
      }
      if (req.method === 'POST' && id) {
        const entry = entries[Number(id[1]) - 1]!;
        entry.committed = true;
        entry.size = (JSON.parse(data.toString()) as { size: number }).size;
        return void res.writeHead(204).end();
      }
      const blob = /^\/blob\/(\d+)$/.exec(url.pathname);
      if (req.method === 'GET' && blob) {
        const entry = entries[Number(blob[1])]!;
        const bytes = Buffer.concat(
          Object.keys(entry.chunks)
            .map(Number)
            .sort((a, b) => a - b)
            .map((k) => entry.chunks[k]!),
        );
        return void res.writeHead(200, { 'content-length': bytes.length }).end(bytes);
      }
      res.writeHead(404).end();
    })().catch((e: unknown) => res.writeHead(500).end(String(e)));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return { url: base, entries, lookups, close: () => new Promise((r) => server.close(() => r())) };
}

let root: string;
let bundle: string;
let service: FakeCacheService;

void before(async () => {
  await ensureTestImage('podman');
  root = mkdtempSync(join(tmpdir(), 'airlock-action-cache-'));
  bundle = runner.buildBundle(root);
  service = await startCacheService();
});
void after(async () => {
  await service.close();
  rmSync(root, { recursive: true, force: true });
});

void describe('images through the Actions cache', { timeout: 900_000 }, () => {
  void it('first run saves under content-hash keys, a second run restores and loads them, before any PR code', async () => {
    const origin = runner.originWith(
      root,
      'cache',
      { '.airlock/sandbox.yaml': `network_sandbox: false\nimage: ${TEST_IMAGE}\n` },
      { 't.sh': 'echo hi\n' },
    );
    // A runner's RUNNER_TEMP is the same path in every job, and the cache version hashes the cached paths.
    const runnerTemp = join(root, 'runner-temp');
    mkdirSync(runnerTemp);
    const runnerEnv = { ACTIONS_CACHE_URL: service.url, RUNNER_TEMP: runnerTemp };

    const first = await runner.runAction(
      bundle,
      root,
      origin,
      { command: 'sh t.sh', 'cache-version': '7' },
      undefined,
      runnerEnv,
    );
    assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}`);
    assert.match(first.stdout, /image cache: restored \[\], saved \[repo(, proxy)?\]/);
    const saved = service.entries.filter((e) => e.committed).map((e) => e.key);
    assert.ok(saved.length >= 1, `nothing was uploaded:\n${first.stdout}`);
    for (const key of saved) assert.match(key, /^airlock-(repo|proxy)-[0-9a-f]{64}-v7$/);
    assert.ok(service.entries.every((e) => e.size > 0));
    // Cache work happens before the sandbox starts.
    assert.ok(first.stdout.indexOf('image cache:') < first.stdout.indexOf('::stop-commands::'));

    rmSync(join(runnerTemp, 'airlock-image-cache'), { recursive: true });
    const second = await runner.runAction(
      bundle,
      root,
      origin,
      { command: 'sh t.sh', 'cache-version': '7' },
      undefined,
      runnerEnv,
    );
    assert.equal(second.code, 0, `${second.stdout}\n${second.stderr}`);
    assert.match(
      second.stdout,
      new RegExp(`image cache: restored \\[${saved.map((k) => k.split('-')[1]).join(', ')}\\], saved \\[\\]`),
    );
    assert.equal(service.entries.length, saved.length, 'the second run uploaded again');
    assert.match(second.sandboxOutput, /^hi$/m);
  });
});
