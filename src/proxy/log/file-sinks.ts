import { createWriteStream, type WriteStream } from 'node:fs';
import { formatJsonLine, formatTextLine, lineLog, type LineSink, type NetworkLog } from './network-log.js';

/**
 * The network log as the proxy process writes it: text and JSONL files inside the proxy container, and/or event
 * lines on stdout for the host (`AIRLOCK-EVENT <json>\t<text>`; the tab is safe because JSON escapes tabs and the
 * text line has every control character escaped).
 */

export const EVENT_PREFIX = 'AIRLOCK-EVENT ';

export interface ProcessLog extends NetworkLog {
  /** Writes the event lines still held for stdout (before a line that must follow them, such as the ready line). */
  flush(): void;
  /** Flushes, then closes the files. */
  close(): Promise<void>;
}

/** Lines held for stdout before a write even within one turn of the event loop. */
const STDOUT_BATCH_BYTES = 64 * 1024;

/**
 * Event lines for stdout are collected and written once per turn of the event loop. stdout is a pipe, and Node
 * writes to pipes synchronously: a write per request was a system call and a wake-up of the reader (conmon, the
 * engine client, the CLI) per request, ~16% of the proxy's CPU under keep-alive load (bench:topology). Under light
 * load a turn holds one line, so lines are no later than before; order is kept.
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
  let flushQueued: NodeJS.Immediate | null = null;
  const flush = () => {
    if (flushQueued) clearImmediate(flushQueued);
    flushQueued = null;
    if (held === '') return;
    const chunk = held;
    held = '';
    stdout.write(chunk);
  };
  return {
    write(event) {
      toFiles.write(event);
      if (!where.stdout) return;
      held += `${EVENT_PREFIX}${formatJsonLine(event)}\t${formatTextLine(event)}\n`;
      if (held.length >= STDOUT_BATCH_BYTES) flush();
      else flushQueued ??= setImmediate(flush);
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
