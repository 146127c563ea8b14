import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import * as cache from '@actions/cache';
import * as core from '@actions/core';
import type { Command, CommandContext } from '../cli/commands/types.js';
import { AirlockError, EXIT } from '../cli/errors.js';

/**
 * Repo and proxy images through the Actions cache, keyed by content hash (`airlock image hash`). Everything here
 * happens before any PR code runs, and keys are immutable, so a PR cannot poison what a later run loads.
 */

/** An `airlock image` command failed or answered something unreadable; its own message is already in the log. */
export class ImageCacheError extends AirlockError {
  constructor(message: string) {
    super(message, EXIT.airlock, 'image_cache');
  }
}

export const IMAGE_KINDS = ['repo', 'proxy'] as const;
export type ImageKind = (typeof IMAGE_KINDS)[number];

/**
 * `repo=<hex>\nproxy=<hex>\n` → hashes. Anything else on stdout is an error (Airut's Action `eval`s it); a build
 * without the network sandbox prints only `repo=`.
 */
export function parseImageHashes(stdout: string): Partial<Record<ImageKind, string>> {
  const found: Partial<Record<ImageKind, string>> = {};
  for (const line of stdout.split('\n')) {
    if (line.trim() === '') continue;
    const m = /^(repo|proxy)=([0-9a-f]{64})$/.exec(line.trim());
    if (!m)
      throw new ImageCacheError(`unexpected line from 'airlock image hash': ${JSON.stringify(line.slice(0, 80))}`);
    found[m[1] as ImageKind] = m[2]!;
  }
  if (!found.repo) throw new ImageCacheError(`'airlock image hash' printed no repo hash`);
  return found;
}

/** All 64 hex digits (Airut's spec says 16; its Action uses 64 — so do we: D8). */
export function imageCacheKey(kind: ImageKind, hash: string, version: string): string {
  return `airlock-${kind}-${hash}${version ? `-v${version}` : ''}`;
}

export function collectingStream(): Writable & { text(): string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, done) {
      chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
      done();
    },
  });
  return Object.assign(stream, { text: () => Buffer.concat(chunks).toString('utf8') });
}

export interface ImageCacheOptions {
  image: Command;
  ctx: CommandContext;
  dir: string;
  version: string;
  /** Options the image commands need too (engine, config location). */
  imageArgs: string[];
}

export type ImageCacheOutcome = { status: 'unavailable' } | { status: 'done'; hits: ImageKind[]; saved: ImageKind[] };

export async function syncImageCache(o: ImageCacheOptions): Promise<ImageCacheOutcome> {
  if (!cache.isFeatureAvailable()) {
    core.info('The Actions cache service is not available here; images are built without it.');
    return { status: 'unavailable' };
  }
  const out = collectingStream();
  const hashCode = await o.image(['hash', ...o.imageArgs], { ...o.ctx, stdout: out });
  if (hashCode !== 0)
    throw new ImageCacheError(`'airlock image hash' failed (exit ${hashCode}); see its message above`);
  const hashes = parseImageHashes(out.text());
  await mkdir(o.dir, { recursive: true });

  const hits: ImageKind[] = [];
  const misses: ImageKind[] = [];
  const kinds = IMAGE_KINDS.filter((k) => hashes[k] !== undefined);
  for (const kind of kinds) {
    const key = imageCacheKey(kind, hashes[kind]!, o.version);
    const hit = await cache.restoreCache([join(o.dir, `${kind}.tar`)], key);
    (hit === key ? hits : misses).push(kind);
  }
  if (hits.length > 0) await o.image(['load', o.dir, ...o.imageArgs], o.ctx);
  if (misses.length === 0) return { status: 'done', hits, saved: [] };

  const saveCode = await o.image(['save', o.dir, ...o.imageArgs], o.ctx);
  if (saveCode !== 0)
    throw new ImageCacheError(`'airlock image save' failed (exit ${saveCode}); see its message above`);
  const saved: ImageKind[] = [];
  for (const kind of misses) {
    try {
      // -1: the service refused (another job reserved the same immutable key first); the image is built either way.
      const id = await cache.saveCache([join(o.dir, `${kind}.tar`)], imageCacheKey(kind, hashes[kind]!, o.version));
      if (id !== -1) saved.push(kind);
    } catch (e) {
      core.warning(`could not save the ${kind} image to the cache: ${(e as Error).message}`);
    }
  }
  return { status: 'done', hits, saved };
}
