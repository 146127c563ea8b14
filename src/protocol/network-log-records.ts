/**
 * Reading JSONL network logs (docs/network-log.md) back: one JSON object per line. Every string in a record that came
 * from the sandbox is attacker-chosen, so readers take fields through `recordText` (strings only) and count lines
 * that are not objects instead of trusting them.
 */

export type LogRecord = Record<string, unknown>;

export function readLogRecords(jsonl: string): { records: LogRecord[]; unreadable: number } {
  const records: LogRecord[] = [];
  let unreadable = 0;
  for (const line of jsonl.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const parsed: unknown = JSON.parse(line);
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
      records.push(parsed as LogRecord);
    } catch {
      unreadable++;
    }
  }
  return { records, unreadable };
}

/** A string field, or '' when it is absent or not a string. */
export function recordText(record: LogRecord, key: string): string {
  const v = record[key];
  return typeof v === 'string' ? v : '';
}
