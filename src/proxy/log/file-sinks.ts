import { createWriteStream, type WriteStream } from 'node:fs';
import { encodeEventLine } from '../../protocol/proxy-wire.js';
import { formatJsonLine, formatTextLine, lineLog, type LineSink, type NetworkLog } from './network-log.js';

/**
 * The network log as the proxy process writes it: text and JSONL files inside the proxy container, and/or event
 * lines on stdout for the host (their format is protocol/proxy-wire.ts).
 */

export interface ProcessLog extends NetworkLog {
  /** Flushes and closes the files. */
  close(): Promise<void>;
}

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
  return {
    write(event) {
      toFiles.write(event);
      if (where.stdout) stdout.write(encodeEventLine(formatJsonLine(event), formatTextLine(event)));
    },
    close: () =>
      Promise.all(files.map((f) => new Promise<void>((resolve) => f.end(() => resolve())))).then(() => undefined),
  };
}
