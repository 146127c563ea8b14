/**
 * Drives the real airlock CLI in a child process (real exit codes, real signals) against real engines, with
 * throwaway workspaces. Docker runs only when AIRLOCK_TEST_DOCKER=1 (CI starts dockerd and sets it, so a broken
 * Docker fails loudly there); otherwise its suites are skipped with that reason.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureTestImage, exec, TEST_IMAGE } from '../helpers/images.js';

export { TEST_IMAGE, exec };

const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(HERE, '../..');
const ENTRY = join(HERE, '../../src/cli/bin.ts');
const TSX = join(REPO, 'node_modules/tsx/dist/esm/index.mjs');

export type EngineName = 'podman' | 'docker';

export interface EngineSuite {
  engine: EngineName;
  /** A reason to skip, or false. */
  skip: string | false;
}

export const ENGINE_SUITES: EngineSuite[] = [
  { engine: 'podman', skip: false },
  {
    engine: 'docker',
    skip:
      process.env.AIRLOCK_TEST_DOCKER === '1' ? false : 'Docker suite: set AIRLOCK_TEST_DOCKER=1 with dockerd running',
  },
];

export interface AirlockResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

export interface AirlockOptions {
  cwd: string;
  env?: Record<string, string>;
  input?: Buffer | string;
  /** Its own process group, so a test can signal the whole group as a CI runner's cancel does. */
  detached?: boolean;
}

function childEnv(extra: Record<string, string> | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME ?? '/root' };
  // Rootless Podman finds its runtime directory (and so its containers and networks) through XDG_RUNTIME_DIR.
  for (const key of ['TMPDIR', 'XDG_RUNTIME_DIR'] as const) if (process.env[key]) env[key] = process.env[key];
  return { ...env, ...extra };
}

/** Pids of every airlock process this test file started: their containers are the only ones a test may judge. */
// This process too: tests plant containers owned by it to prove a live owner's resources are left alone.
const started = new Set<number>([process.pid]);

export function startAirlock(args: string[], options: AirlockOptions): ChildProcess {
  return track(
    spawn(process.execPath, ['--import', TSX, ENTRY, ...args], {
      cwd: options.cwd,
      env: childEnv(options.env),
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: options.detached ?? false,
    }),
  );
}

function track(child: ChildProcess): ChildProcess {
  if (child.pid !== undefined) started.add(child.pid);
  return child;
}

export function collect(child: ChildProcess, input?: Buffer | string): Promise<AirlockResult> {
  return new Promise((done, fail) => {
    const out: Buffer[] = [];
    let err = '';
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', fail);
    child.on('close', (code, signal) => done({ code, signal, stdout: Buffer.concat(out), stderr: err }));
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(input ?? '');
  });
}

export function airlock(args: string[], options: AirlockOptions): Promise<AirlockResult> {
  return collect(startAirlock(args, options), options.input);
}

/** A fresh workspace with `.airlock/sandbox.yaml` (and any other files), under the OS temp dir. */
export async function workspace(sandboxYaml: string, files: Record<string, string> = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'airlock-ct-'));
  await mkdir(join(dir, '.airlock'));
  await writeFile(join(dir, '.airlock/sandbox.yaml'), sandboxYaml);
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  return dir;
}

/** sandbox.yaml for a test: the Debian test image, no network sandbox (the proxy is another suite's business). */
export function sandboxYaml(extra = ''): string {
  return `network_sandbox: false\nimage: ${TEST_IMAGE}\n${extra}`;
}

export async function prepareEngine(engine: EngineName): Promise<void> {
  await ensureTestImage(engine);
}

/** `airlock run --engine ENGINE`, the start of most invocations. */
export const runOn = (engine: EngineName): string[] => ['run', '--engine', engine];

/**
 * Names of containers (any state) carrying an airlock run label and owned by an airlock process this test file
 * started — other airlock runs on the machine (another suite, another lane) are not this test's to judge.
 */
export async function airlockContainers(engine: EngineName): Promise<string[]> {
  // Docker's ps has `.Label NAME`; Podman's has the `.Labels` map.
  const ownerPid =
    engine === 'docker' ? '{{.Label "io.airlock.owner-pid"}}' : '{{index .Labels "io.airlock.owner-pid"}}';
  const r = await exec([
    engine,
    'ps',
    '--all',
    '--filter',
    'label=io.airlock.run',
    '--format',
    `{{.Names}} ${ownerPid}`,
  ]);
  return r.stdout
    .split('\n')
    .map((line) => line.trim().split(' '))
    .filter(([name, pid]) => name && started.has(Number(pid)))
    .map(([name]) => name!);
}

/** Wait until `predicate` holds, polling; fails the test with `what` after `ms`. */
export async function waitFor(what: string, predicate: () => boolean | Promise<boolean>, ms = 20000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await predicate()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}
