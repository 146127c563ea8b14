/**
 * A process's start time (clock ticks since boot, from /proc). With the pid it names one process for good: a pid
 * that was recycled after its owner died has another start time, so a lock file or a resource label that records
 * both never mistakes a stranger for its live owner.
 */
import { readFileSync } from 'node:fs';

/** Field 22 of /proc/PID/stat; the command name (field 2) may contain spaces and parentheses, so parse after ')'. */
export function parseProcStartTime(stat: string): string | null {
  const close = stat.lastIndexOf(')');
  if (close < 0) return null;
  const fields = stat.slice(close + 2).split(' ');
  // fields[0] is field 3 (state), so field 22 is fields[19]
  return fields[19] ?? null;
}

export function processStartTime(pid: number): string | null {
  try {
    return parseProcStartTime(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}
