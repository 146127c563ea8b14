/**
 * The network logs of runs that asked for none but had requests blocked, kept in airlock's state directory
 * (created 0700) and bounded in number.
 */
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { stateDir } from '../host/state-dir.js';

/** How many unrequested network logs are kept (the newest); each explains blocked requests of one run. */
export const KEPT_NETWORK_LOGS = 20;

/** Where a run's network log goes when no `--network-log` was given: named so that names sort by time. */
export async function keptNetworkLogPath(runId: string, now: Date = new Date()): Promise<string> {
  const dir = stateDir('network-logs');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return join(dir, `${now.toISOString().replace(/[:.]/g, '-')}-${runId}.log`);
}

/** Removes all but the newest `keep` logs in the directory (by name, which starts with the time). */
export async function pruneKeptNetworkLogs(dir: string, keep = KEPT_NETWORK_LOGS): Promise<string[]> {
  const logs = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.log')).sort();
  const old = logs.slice(0, Math.max(logs.length - keep, 0));
  for (const name of old) await rm(join(dir, name), { force: true });
  return old;
}
