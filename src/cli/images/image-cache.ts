/**
 * Reuse-or-build for locally built images (airut-behaviour.md items 81-82): an image younger than the maximum age is
 * reused; an absent one is built; a stale one (or any with max age 0) is rebuilt with `--no-cache` so base layers
 * and package indexes are refreshed. Concurrent airlock runs building the same tag serialise on a lock file, and
 * the second one re-checks after the first finishes instead of building again.
 */
import { callEngine, type Engine } from '../engine/engine.js';
import { withBuildLock } from '../host/build-lock.js';

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
