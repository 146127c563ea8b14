/**
 * Reuse-or-build for locally built images (airut-behaviour.md items 81-82): an image younger than the maximum age is
 * reused; an absent one is built; a stale one (or any with max age 0) is rebuilt with `--no-cache` so base layers
 * and package indexes are refreshed. Concurrent airlock runs building the same tag serialise on a lock file, and
 * the second one re-checks after the first finishes instead of building again.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { callEngine, type Engine } from '../engine/engine.js';
import { processStartTime } from '../session/labels.js';
import { stateDir } from '../session/state-dir.js';

export type ImageAction = 'reuse' | 'build' | 'rebuild';

/**
 * The engine's `{{.Created}}`: Docker prints RFC 3339 (`2024-05-01T10:00:00.123456789Z`), Podman prints Go's
 * default (`2024-05-01 10:00:00.123456789 +0000 UTC`). Returns null for anything else, which counts as absent.
 */
export function parseCreated(text: string): Date | null {
  const value = text.trim();
  const iso = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$/.exec(value);
  const go = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?:\.(\d+))? ([+-]\d{2})(\d{2})(?: \S+)?$/.exec(value);
  let date: string, time: string, fraction: string | undefined, zone: string;
  if (iso) {
    [, date, time, fraction] = iso as unknown as [string, string, string, string | undefined];
    const z = iso[4];
    zone = !z || z === 'Z' ? 'Z' : z.includes(':') ? z : `${z.slice(0, 3)}:${z.slice(3)}`;
  } else if (go) {
    [, date, time, fraction] = go as unknown as [string, string, string, string | undefined];
    zone = `${go[4]}:${go[5]}`;
  } else {
    return null;
  }
  const millis = (fraction ?? '').padEnd(3, '0').slice(0, 3);
  const parsed = new Date(`${date}T${time}.${millis}${zone}`);
  return Number.isNaN(parsed.getTime()) ? null : parsed;
}

export function decideImageAction(created: Date | null, now: Date, maxAgeHours: number): ImageAction {
  if (created === null) return 'build';
  if (maxAgeHours === 0) return 'rebuild';
  const ageHours = (now.getTime() - created.getTime()) / 3_600_000;
  return ageHours > maxAgeHours ? 'rebuild' : 'reuse';
}

/** The image's creation time, or null when the engine does not have it (or reports something unparseable). */
export async function imageCreated(engine: Engine, tag: string): Promise<Date | null> {
  const result = await callEngine(engine, ['image', 'inspect', '--format', '{{.Created}}', tag]);
  if (result.code !== 0) return null;
  return parseCreated(result.stdout);
}

export interface LockOptions {
  dir?: string;
  pollMs?: number;
  onWait?: (ownerPid: number) => void;
  signal?: AbortSignal;
}


function ownerIsAlive(content: string): boolean {
  const [pidText, start] = content.trim().split(' ');
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const running = processStartTime(pid);
  return running !== null && (start === undefined || start === '' || start === running);
}

/**
 * Run `body` while holding an exclusive per-key lock file (created with O_EXCL). A lock whose owner process is gone
 * is stale and taken over, so a build killed with SIGKILL does not block later runs.
 */
export async function withBuildLock<T>(key: string, body: () => Promise<T>, options: LockOptions = {}): Promise<T> {
  const dir = options.dir ?? stateDir('locks');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, `${createHash('sha256').update(key).digest('hex').slice(0, 32)}.lock`);
  let warned = false;
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      const handle = await open(path, 'wx', 0o600);
      await handle.writeFile(`${process.pid} ${processStartTime(process.pid) ?? ''}\n`);
      await handle.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const content = await readFile(path, 'utf8').catch(() => null);
      // An empty file is a lock being written right now; only a complete record of a dead owner is stale.
      if (content !== null && content.endsWith('\n') && !ownerIsAlive(content)) {
        await unlink(path).catch(() => undefined);
        continue;
      }
      if (!warned && content) {
        options.onWait?.(Number(content.split(' ')[0]));
        warned = true;
      }
      await new Promise((r) => setTimeout(r, options.pollMs ?? 250));
    }
  }
  try {
    return await body();
  } finally {
    await unlink(path).catch(() => undefined);
  }
}

export interface EnsureImageOptions {
  engine: Engine;
  tag: string;
  maxAgeHours: number;
  now?: () => Date;
  /** Builds (or imports) the image under `tag`; `noCache` is set when refreshing a stale image. */
  build: (noCache: boolean) => Promise<void>;
  onWait?: (ownerPid: number) => void;
  lockDir?: string;
  signal?: AbortSignal;
}

export interface EnsuredImage {
  tag: string;
  action: ImageAction;
}

export async function ensureImage(options: EnsureImageOptions): Promise<EnsuredImage> {
  const now = options.now ?? (() => new Date());
  const first = decideImageAction(await imageCreated(options.engine, options.tag), now(), options.maxAgeHours);
  if (first === 'reuse') return { tag: options.tag, action: 'reuse' };
  const startedAt = now();
  return withBuildLock(
    `${options.engine.binary}\0${options.tag}`,
    async () => {
      const created = await imageCreated(options.engine, options.tag);
      // Someone else built it while we waited for the lock: that build is as fresh as ours would be.
      if (created !== null && created.getTime() >= startedAt.getTime() - 1000) {
        return { tag: options.tag, action: 'reuse' as const };
      }
      const action = decideImageAction(created, now(), options.maxAgeHours);
      if (action === 'reuse') return { tag: options.tag, action };
      await options.build(action === 'rebuild');
      return { tag: options.tag, action };
    },
    { dir: options.lockDir, onWait: options.onWait, signal: options.signal },
  );
}
