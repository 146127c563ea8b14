/**
 * airlock's own messages. stdout belongs to the sandboxed command, so everything here goes to stderr — or, with
 * `--log FILE`, only to that file (appended, parents created), as in Airut (airut-behaviour.md item 49). Quiet by
 * default: errors and warnings only; `--verbose` adds progress, `--debug` adds engine command lines (names only,
 * never values).
 */
import { createWriteStream, mkdirSync, openSync, type WriteStream } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { UsageError } from '../errors.js';

export type LogLevel = 'error' | 'warn' | 'notice' | 'info' | 'debug';

/** `notice` is shown by default like a warning, without the `warning:` tag: facts every run states (its image). */
const RANK: Record<LogLevel, number> = { error: 0, warn: 1, notice: 1, info: 2, debug: 3 };

export interface Logger {
  readonly level: LogLevel;
  error(message: string): void;
  warn(message: string): void;
  notice(message: string): void;
  info(message: string): void;
  debug(message: string): void;
  /** Engine output streamed verbatim at `--verbose` (build logs). */
  stream(chunk: Buffer): void;
  /**
   * A line of progress through a long step (an image build) at the default level, where a CI log would otherwise
   * show minutes of silence; `--verbose` streams the engine's own output instead.
   */
  progress(message: string): void;
  /** Whether transient progress lines may be drawn on the terminal (stderr is a TTY and no log file). */
  readonly interactive: boolean;
  /** The terminal to draw progress on, when `interactive`. */
  readonly terminal: Writable;
  close(): Promise<void>;
}

export interface LoggerOptions {
  verbose?: boolean;
  debug?: boolean;
  file?: string;
  cwd: string;
  stderr: Writable;
  isTTY: boolean;
}

function timestamp(now: Date): string {
  return now.toISOString().replace('T', ' ').slice(0, 19);
}

export function createLogger(options: LoggerOptions): Logger {
  const level: LogLevel = options.debug ? 'debug' : options.verbose ? 'info' : 'warn';
  let file: WriteStream | null = null;
  if (options.file) {
    const path = resolve(options.cwd, options.file);
    let fd: number;
    try {
      mkdirSync(dirname(path), { recursive: true });
      fd = openSync(path, 'a', 0o600);
    } catch (err) {
      throw new UsageError(`--log ${path}: cannot write there (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
    file = createWriteStream('', { fd });
    // A log that fails later (disk full) must not take the run down with it.
    file.on('error', () => undefined);
  }
  const sink: Writable = file ?? options.stderr;
  const write = (at: LogLevel, message: string, tagged = true): void => {
    if (RANK[at] > RANK[level]) return;
    if (file) {
      file.write(`${timestamp(new Date())} [${tagged ? at.toUpperCase() : 'INFO'}] airlock: ${message}\n`);
    } else {
      const tag = !tagged ? '' : at === 'error' ? 'error: ' : at === 'warn' ? 'warning: ' : '';
      options.stderr.write(`airlock: ${tag}${message}\n`);
    }
  };
  return {
    level,
    interactive: options.isTTY && file === null,
    terminal: options.stderr,
    error: (m) => write('error', m),
    warn: (m) => write('warn', m),
    notice: (m) => write('notice', m),
    info: (m) => write('info', m),
    debug: (m) => write('debug', m),
    stream: (chunk) => {
      if (RANK[level] >= RANK.info) sink.write(chunk);
    },
    progress: (m) => write('warn', m, false),
    close: () =>
      new Promise<void>((done) => {
        if (file) file.end(done);
        else done();
      }),
  };
}
