/**
 * airlock's own files under the temp directory, one tree per user (`$TMPDIR/airlock-<uid>/`): build locks, and
 * the network logs of runs that asked for none but had requests blocked.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function stateDir(sub: string): string {
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  return join(tmpdir(), `airlock-${uid}`, sub);
}
