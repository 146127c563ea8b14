/**
 * Where the proxy's event lines end up on the host: the text log (a `--network-log` file, or one in airlock's state
 * directory that survives the run only when it explains a blocked request, the newest few of them), the JSONL log
 * (`--network-log-json`), the `--network-log-live` echo on stderr, and the tallies `airlock run` reports.
 */
import type { WriteStream } from 'node:fs';
import { mkdir, open, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { LogRecord } from '../../protocol/network-log-records.js';
import type { EventLine } from '../../protocol/proxy-wire.js';
import { UsageError } from '../errors.js';
import { stateDir } from '../host/state-dir.js';

/** How many unrequested network logs are kept (the newest); each explains blocked requests of one run. */
export const KEPT_NETWORK_LOGS = 20;

/** Where a run's network log goes when no `--network-log` was given: named so that names sort by time. */
export async function keptNetworkLogPath(runId: string, now: Date = new Date()): Promise<string> {
  const dir = stateDir('network-logs');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return path.join(dir, `${now.toISOString().replace(/[:.]/g, '-')}-${runId}.log`);
}

/** Removes all but the newest `keep` logs in the directory (by name, which starts with the time). */
export async function pruneKeptNetworkLogs(dir: string, keep = KEPT_NETWORK_LOGS): Promise<string[]> {
  const logs = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.log')).sort();
  const old = logs.slice(0, Math.max(logs.length - keep, 0));
  for (const name of old) await rm(path.join(dir, name), { force: true });
  return old;
}

/** The network-log flags of `airlock run`, paths already resolved. */
export interface NetworkLogOptions {
  /** Append the text log here (kept). */
  textFile?: string;
  /** Append the JSONL log here (kept). */
  jsonFile?: string;
  /** Echo each text line to stderr as `[net] …`. */
  live: boolean;
}

export interface NetworkCounts {
  allowed: number;
  blocked: number;
  errors: number;
  /** The text network log's path, when one is kept. */
  logPath?: string;
}

export interface NetworkLogSink {
  write(line: EventLine): void;
  /** Complete once `close()` has resolved. */
  counts(): NetworkCounts;
  close(): Promise<void>;
}

export interface NetworkLogSinkOptions {
  runId: string;
  /** Where `--network-log-live` lines go. */
  stderr: NodeJS.WritableStream;
  /** A log file that fails after it was opened (disk full): said once, the run goes on. */
  warn: (message: string) => void;
  /** Sees every event's JSON record as it arrives (the end-of-run summary and audit mode's suggestion). */
  onRecord?: (record: LogRecord) => void;
}

async function openAppend(file: string, flag: string | null): Promise<WriteStream> {
  try {
    await mkdir(path.dirname(file), { recursive: true });
    const handle = await open(file, 'a', 0o600);
    return handle.createWriteStream();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    // A temporary log that cannot be created is the machine's problem, not the command line's.
    if (flag === null) throw err;
    throw new UsageError(`${flag} ${file}: cannot write the network log there (${code})`);
  }
}

/** Opens the files up front, so a path that cannot be written fails the run before anything starts. */
export async function openNetworkLogSink(
  options: NetworkLogOptions,
  { runId, stderr, warn, onRecord }: NetworkLogSinkOptions,
): Promise<NetworkLogSink> {
  // Unrequested, the log lives in airlock's own directory, where only the newest few are kept.
  const textPath = options.textFile ?? (await keptNetworkLogPath(runId));
  const text = await openAppend(textPath, options.textFile ? '--network-log' : null);
  let json: WriteStream | undefined;
  try {
    json = options.jsonFile ? await openAppend(options.jsonFile, '--network-log-json') : undefined;
  } catch (err) {
    text.destroy();
    if (!options.textFile) await rm(textPath, { force: true });
    throw err;
  }
  let warned = false;
  for (const stream of [text, json]) {
    stream?.on('error', (err) => {
      if (!warned) warn(`the network log cannot be written: ${err.message}`);
      warned = true;
    });
  }
  const live = options.live ? stderr : undefined;
  const tally: NetworkCounts = { allowed: 0, blocked: 0, errors: 0, logPath: textPath };
  // An audit-flagged request explains as much as a blocked one: its log is kept too.
  let worthKeeping = false;
  return {
    write({ record, json: jsonLine, text: textLine }) {
      onRecord?.(record);
      if (record.decision === 'allowed') tally.allowed++;
      else if (record.decision === 'blocked') tally.blocked++;
      else if (record.decision === 'error') tally.errors++;
      if (record.decision === 'blocked' || record.decision === 'would_block') worthKeeping = true;
      json?.write(jsonLine + '\n');
      if (textLine) {
        text.write(textLine + '\n');
        live?.write(`[net] ${textLine}\n`);
      }
    },
    counts: () => ({ ...tally }),
    async close() {
      await Promise.all([text, json].map((s) => (s ? new Promise<void>((r) => s.end(r)) : Promise.resolve())));
      // An unrequested log is kept only when it explains something (a blocked or audit-flagged request), and only
      // the newest few.
      if (!options.textFile) {
        if (worthKeeping) await pruneKeptNetworkLogs(path.dirname(textPath));
        else await rm(textPath, { force: true });
      }
    },
  };
}
