/**
 * A cross-process lock per key (a file created with O_EXCL), so concurrent airlock runs building the same image
 * serialise instead of building it twice. The file records its owner's pid and start time: a lock whose owner is
 * gone is stale and taken over, so a build killed with SIGKILL does not block later runs.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { processStartTime } from './process-start-time.js';
import { stateDir } from './state-dir.js';

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
