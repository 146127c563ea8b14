/**
 * Old repository images. Every Dockerfile change builds a new `airlock-repo:<hash>` (and a `--no-cache` rebuild
 * leaves the previous image untagged), so a busy checkout fills the disk. After each build airlock keeps the
 * newest few images built from the same Dockerfile (a label records which) and removes the rest; an image a
 * container still uses is refused by the engine and stays. Images built before the label existed are left alone.
 */
import { callEngine, type Engine } from '../engine/engine.js';
import type { Logger } from '../session/log.js';
import { parseCreated } from './image-cache.js';

/** The label holding the absolute path of the Dockerfile an `airlock-repo` image was built from. */
export const REPO_SOURCE_LABEL = 'io.airlock.repo-dockerfile';

/** Per Dockerfile, counting the image just built; `--keep-images` overrides it, 0 turns pruning off. */
export const DEFAULT_KEEP_IMAGES = 3;

const bareId = (id: string): string => id.trim().replace(/^sha256:/, '');

export interface PrunableImage {
  id: string;
  created: Date | null;
}

/** Which images go: all but the newest `keep - 1` besides the current one; an unreadable age counts as oldest. */
export function imagesToPrune(images: PrunableImage[], currentId: string, keep: number): string[] {
  if (keep <= 0) return [];
  const others = images
    .filter((image) => image.id !== currentId)
    .sort((a, b) => (b.created?.getTime() ?? -Infinity) - (a.created?.getTime() ?? -Infinity));
  return others.slice(Math.max(keep - 1, 0)).map((image) => image.id);
}

export async function pruneRepoImages(
  engine: Engine,
  options: { dockerfile: string; currentTag: string; keep: number; log: Logger },
): Promise<string[]> {
  if (options.keep <= 0) return [];
  const listed = await callEngine(engine, [
    'image',
    'ls',
    '--no-trunc',
    '--filter',
    `label=${REPO_SOURCE_LABEL}=${options.dockerfile}`,
    '--format',
    '{{.ID}}',
  ]);
  const ids = [...new Set(listed.stdout.split('\n').map(bareId).filter(Boolean))];
  if (listed.code !== 0 || ids.length <= options.keep) return [];
  const current = await callEngine(engine, ['image', 'inspect', '--format', '{{.Id}}', options.currentTag]);
  if (current.code !== 0) return [];
  const inspected = await callEngine(engine, ['image', 'inspect', '--format', '{{.Id}}|{{.Created}}', ...ids]);
  if (inspected.code !== 0) return [];
  const images = inspected.stdout
    .split('\n')
    .filter((line) => line.includes('|'))
    .map((line) => {
      const [id = '', created = ''] = line.split('|');
      return { id: bareId(id), created: parseCreated(created) };
    });
  const removed: string[] = [];
  for (const id of imagesToPrune(images, bareId(current.stdout), options.keep)) {
    const r = await callEngine(engine, ['rmi', id]);
    if (r.code === 0) removed.push(id);
    else options.log.debug(`kept image ${id.slice(0, 12)}: ${r.stderr.trim().split('\n').pop() ?? ''}`);
  }
  if (removed.length > 0) {
    options.log.info(
      `removed ${removed.length} older image(s) built from ${options.dockerfile} (keeping ${options.keep}; --keep-images)`,
    );
  }
  return removed;
}
