/**
 * The container engine: which binary, and how airlock talks to it. Always argv arrays, never a shell string, and
 * secret values travel only in the engine process's environment (see `EngineCallOptions.env`).
 */
import { spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { delimiter, join } from 'node:path';
import { EngineError, UsageError } from '../errors.js';

export type EngineKind = 'podman' | 'docker';

export interface Engine {
  kind: EngineKind;
  /** Absolute path of the engine binary. */
  binary: string;
}

export interface EngineResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface EngineCallOptions {
  /** Extra variables for the engine process itself (values that `-e NAME` copies into the container). */
  env?: Record<string, string>;
  input?: string | Buffer;
  /** Called with each chunk of the engine's combined output (build progress, `--verbose`). */
  onOutput?: (chunk: Buffer) => void;
  signal?: AbortSignal;
}

/** Bound on what a captured call keeps per stream: enough for any inspect/format answer and a build log's tail. */
const CAPTURE_LIMIT = 1 << 20;

export async function findOnPath(name: string, pathVar: string | undefined): Promise<string | null> {
  for (const dir of (pathVar ?? '/usr/local/bin:/usr/bin:/bin').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      await access(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return null;
}

export function parseEngineKind(value: string): EngineKind {
  if (value === 'podman' || value === 'docker') return value;
  throw new UsageError(`--engine must be podman, docker or kubernetes, not '${value}'`);
}

/** `--engine` when given, else podman if installed, else docker. */
export async function resolveEngine(requested: EngineKind | undefined, env: NodeJS.ProcessEnv): Promise<Engine> {
  const order: EngineKind[] = requested ? [requested] : ['podman', 'docker'];
  for (const kind of order) {
    const binary = await findOnPath(kind, env.PATH);
    if (binary) return { kind, binary };
  }
  throw new EngineError(
    requested
      ? `${requested} is not installed (not found on PATH); install it or choose another --engine`
      : 'no container engine found: install podman (preferred) or docker, or put it on PATH',
  );
}

/** Environment for an engine process: the caller's PATH and HOME-ish basics, plus the values `-e NAME` reads. */
export function engineEnvironment(extra: Record<string, string> | undefined): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {};
  for (const key of [
    'PATH',
    'HOME',
    'USER',
    'TMPDIR',
    'XDG_RUNTIME_DIR',
    'XDG_CONFIG_HOME',
    'XDG_DATA_HOME',
    'CONTAINERS_CONF',
    'CONTAINERS_STORAGE_CONF',
    'CONTAINER_HOST',
    'DOCKER_HOST',
    'DOCKER_CONFIG',
    'DOCKER_CONTEXT',
    'DOCKER_BUILDKIT',
  ]) {
    const value = process.env[key];
    if (value !== undefined) base[key] = value;
  }
  return { ...base, ...extra };
}

/** Keeps the last CAPTURE_LIMIT bytes of a stream: a failure's cause is at the end of the output. */
function tailBuffer(): { push(chunk: Buffer): void; text(): string } {
  const chunks: Buffer[] = [];
  let bytes = 0;
  return {
    push(chunk) {
      chunks.push(chunk);
      bytes += chunk.length;
      while (bytes > CAPTURE_LIMIT && chunks.length > 1) bytes -= chunks.shift()!.length;
    },
    text: () => Buffer.concat(chunks).toString('utf8'),
  };
}

/** Run the engine to completion and capture its output (bounded). */
export function callEngine(engine: Engine, args: string[], options: EngineCallOptions = {}): Promise<EngineResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(engine.binary, args, {
      env: engineEnvironment(options.env),
      stdio: ['pipe', 'pipe', 'pipe'],
      signal: options.signal,
    });
    const out = tailBuffer();
    const err = tailBuffer();
    child.stdout.on('data', (chunk: Buffer) => {
      options.onOutput?.(chunk);
      out.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      options.onOutput?.(chunk);
      err.push(chunk);
    });
    child.on('error', (e) => reject(new EngineError(`cannot run ${engine.kind}: ${e.message}`)));
    child.on('close', (code, signal) =>
      resolve({
        code: code ?? 128 + signalNumber(signal),
        stdout: out.text(),
        stderr: err.text(),
      }),
    );
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

/** Like `callEngine`, but a non-zero exit is an `EngineError` naming the action and the engine's message. */
export async function mustCallEngine(
  engine: Engine,
  args: string[],
  what: string,
  options: EngineCallOptions = {},
): Promise<string> {
  const result = await callEngine(engine, args, options);
  if (result.code !== 0) {
    throw new EngineError(`${what} failed (${engine.kind} exited ${result.code}): ${lastLines(result.stderr, 20)}`);
  }
  return result.stdout;
}

export function lastLines(text: string, count: number): string {
  const lines = text.trimEnd().split('\n');
  return lines.slice(-count).join('\n');
}

export function signalNumber(signal: NodeJS.Signals | null): number {
  return signal ? osConstants.signals[signal] : 0;
}
