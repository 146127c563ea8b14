/**
 * The container's bind mounts: the working directory at /workspace (read-write) plus every `--mount SRC:DST[:ro]`.
 * A `--mount` whose destination is /workspace replaces the default instead of clashing with it (Airut passes both
 * and the engine rejects the duplicate, airut-behaviour.md item 68).
 */
import { realpath } from 'node:fs/promises';
import { posix, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import type { BindMount } from '../engine/run-args.js';

export const WORKSPACE = '/workspace';

export interface MountFlag {
  source: string;
  target: string;
  readOnly: boolean;
}

/** `SRC:DST`, `SRC:DST:ro` or `SRC:DST:rw`; DST must be an absolute container path. */
export function parseMountFlag(flag: string): MountFlag {
  const parts = flag.split(':');
  const mode = parts.length === 3 ? parts[2] : parts.length === 2 ? 'rw' : null;
  const [source, target] = parts;
  if (mode === null || (mode !== 'ro' && mode !== 'rw') || !source || !target) {
    throw new UsageError(`invalid --mount '${flag}' (expected SRC:DST or SRC:DST:ro)`);
  }
  if (!target.startsWith('/')) {
    throw new UsageError(`invalid --mount '${flag}': the destination must be an absolute path in the container`);
  }
  return { source, target: posix.normalize(target).replace(/(.)\/$/, '$1'), readOnly: mode === 'ro' };
}

/** The run's mounts in order: workspace (unless replaced), then the flags. Sources are resolved and must exist. */
export async function resolveMounts(cwd: string, flags: string[]): Promise<BindMount[]> {
  const parsed = flags.map(parseMountFlag);
  const seen = new Set<string>();
  for (const m of parsed) {
    if (seen.has(m.target)) throw new UsageError(`two --mount options have the same destination ${m.target}`);
    seen.add(m.target);
  }
  const mounts: BindMount[] = [];
  const real = async (path: string, what: string): Promise<string> => {
    let found: string;
    try {
      found = await realpath(resolve(cwd, path));
    } catch {
      throw new UsageError(`${what} ${resolve(cwd, path)} does not exist`);
    }
    // The engine's -v splits on ':', so such a path would mount something else (or nothing).
    if (found.includes(':')) throw new UsageError(`${what} ${found} contains ':', which cannot be mounted; move it`);
    return found;
  };
  if (!seen.has(WORKSPACE)) {
    mounts.push({ source: await real(cwd, 'the working directory'), target: WORKSPACE, readOnly: false });
  }
  for (const m of parsed) {
    mounts.push({ source: await real(m.source, '--mount source'), target: m.target, readOnly: m.readOnly });
  }
  return mounts;
}
