import { createWriteStream, type WriteStream } from 'node:fs';
import { encodeEventLine } from '../../protocol/proxy-wire.js';
import { formatJsonLine, formatTextLine, lineLog, type LineSink, type NetworkLog } from './network-log.js';

/**
 * The network log as the proxy process writes it: text and JSONL files inside the proxy container, and/or event
 * lines on stdout for the host (their format is protocol/proxy-wire.ts).
 */

export interface ProcessLog extends NetworkLog {
  /** Writes the event lines still held for stdout (before a line that must follow them, such as the ready line). */
  flush(): void;
  /** Flushes, then closes the files. */
  close(): Promise<void>;
}

/** Lines held for stdout before a write, however recent the last one. */
const STDOUT_BATCH_BYTES = 64 * 1024;
/** Under load, writes to stdout are at least this far apart; lines wait at most this long. */
const STDOUT_INTERVAL_MS = 10;

/**
 * Event lines for stdout are collected and written together. stdout is a pipe: each write is a system call and a
 * wake-up of every reader down the chain (conmon, the engine client, the CLI), which on a loaded machine costs
 * more than the line itself. A line after a quiet spell goes out at the end of the current turn of the event loop;
 * while lines keep coming, writes are STDOUT_INTERVAL_MS apart. In bench:topology (docs/benchmarks.md) a write per
 * turn of the event loop still took ~25% of the proxy's CPU under keep-alive load; order is always kept.
 */
export function openProcessLog(
  where: { textPath?: string; jsonPath?: string; stdout?: boolean },
  stdout: LineSink,
): ProcessLog {
  const files: WriteStream[] = [];
  const open = (path: string) => {
    const stream = createWriteStream(path, { flags: 'a', mode: 0o600 });
    // A log that cannot be written must not take the enforcement point down; the host notices the missing lines.
    stream.on('error', () => undefined);
    files.push(stream);
    return stream;
  };
  const toFiles = lineLog({
    ...(where.textPath ? { text: open(where.textPath) } : {}),
    ...(where.jsonPath ? { json: open(where.jsonPath) } : {}),
  });
  let held = '';
  let queued: { kind: 'immediate'; handle: NodeJS.Immediate } | { kind: 'timer'; handle: NodeJS.Timeout } | null = null;
  let lastWrite = -Infinity;
  const flush = () => {
    if (queued?.kind === 'immediate') clearImmediate(queued.handle);
    else if (queued?.kind === 'timer') clearTimeout(queued.handle);
    queued = null;
    if (held === '') return;
    const chunk = held;
    held = '';
    lastWrite = performance.now();
    stdout.write(chunk);
  };
  const schedule = () => {
    if (queued) return;
    const wait = lastWrite + STDOUT_INTERVAL_MS - performance.now();
    queued =
      wait <= 0
        ? { kind: 'immediate', handle: setImmediate(flush) }
        : { kind: 'timer', handle: setTimeout(flush, wait) };
  };
  return {
    write(event) {
      toFiles.write(event);
      if (!where.stdout) return;
      held += encodeEventLine(formatJsonLine(event), formatTextLine(event));
      if (held.length >= STDOUT_BATCH_BYTES) flush();
      else schedule();
    },
    flush,
    close: () => {
      flush();
      return Promise.all(files.map((f) => new Promise<void>((resolve) => f.end(() => resolve())))).then(
        () => undefined,
      );
    },
  };
}
