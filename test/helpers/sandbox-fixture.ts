/**
 * Shared setup for container tests that drive the built CLI (`node dist/cli/bin.js run`) against fake upstreams on
 * this machine: workspaces with `.airlock/`, probes that print `name=value` lines, HTTPS upstreams on 0.0.0.0 that
 * keep every decrypted byte they were sent, and the encodings a leaked secret could take.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { TestPki } from './tls-fixtures.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The built CLI, as users run it (npm test builds first). */
export const CLI_ENTRY = path.join(REPO, 'dist/cli/bin.js');

export const ENGINES = ['podman', ...(process.env.AIRLOCK_TEST_DOCKER === '1' ? ['docker'] : [])] as const;

export const execFileAsync = promisify(execFile);

export interface SandboxRun {
  code: number;
  stdout: string;
  stderr: string;
  /** `name=value` lines from stdout; the last one of a name wins. */
  results: Map<string, string>;
}

export function parseResults(stdout: string): Map<string, string> {
  const results = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) results.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return results;
}

/** Starts `airlock ARGS` in `cwd` with the caller's environment plus `env` (where real secrets are passed). */
export function startCli(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn(process.execPath, [CLI_ENTRY, ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

export function finished(child: ChildProcess): Promise<SandboxRun> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr, results: parseResults(stdout) }));
  });
}

/** `airlock run --engine ENGINE [extra] -- bash -c SCRIPT` in the workspace. */
export function runInSandbox(
  engine: string,
  workspace: string,
  script: string,
  options: { env?: NodeJS.ProcessEnv; extra?: string[] } = {},
): { child: ChildProcess; done: Promise<SandboxRun> } {
  const child = startCli(
    ['run', '--engine', engine, ...(options.extra ?? []), '--', 'bash', '-c', script],
    workspace,
    options.env,
  );
  return { child, done: finished(child) };
}

/** A throwaway workspace holding `.airlock/` files and any other files, keyed by relative path. */
export async function makeWorkspace(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'airlock-cred-'));
  await mkdir(path.join(dir, '.airlock'));
  for (const [relative, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, relative)), { recursive: true });
    await writeFile(path.join(dir, relative), content);
  }
  return dir;
}

export interface RecordedRequest {
  host: string;
  method: string;
  url: string;
  rawHeaders: string[];
  body: Buffer;
}

export interface RecordingUpstream {
  port: number;
  requests: RecordedRequest[];
  /** Every byte received on every connection (decrypted), request lines and bodies included. */
  wire(): Buffer;
  close(): Promise<void>;
}

export type UpstreamHandler = (req: RecordedRequest, res: http.ServerResponse) => void;

/**
 * An HTTPS (or plain HTTP) server on 0.0.0.0, so the proxy container reaches it through host-gateway, that keeps
 * every byte it is sent after TLS, so `wire()` is what the upstream received, not what a parser made of it. node's
 * HTTP server reads a socket's handle directly (no 'data' events), so the parser gets a Duplex fed by the tap.
 */
export async function startRecordingUpstream(
  /** The server certificate, or null for plain HTTP (to see what crosses the network in cleartext). */
  pki: Pick<TestPki, 'certPem' | 'keyPem'> | null,
  handler: UpstreamHandler,
): Promise<RecordingUpstream> {
  const requests: RecordedRequest[] = [];
  const received: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const parser = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const recorded: RecordedRequest = {
        host: String(req.headers.host ?? ''),
        method: req.method ?? '',
        url: req.url ?? '',
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks),
      };
      requests.push(recorded);
      handler(recorded, res);
    });
  });
  const onSocket = (socket: net.Socket): void => {
    sockets.add(socket);
    const tapped = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, done) {
        socket.write(chunk, done);
      },
      final(done) {
        socket.end();
        done();
      },
      destroy(err, done) {
        socket.destroy();
        done(err);
      },
    });
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      tapped.push(chunk);
    });
    socket.on('end', () => tapped.push(null));
    socket.on('error', () => tapped.destroy());
    socket.on('close', () => {
      sockets.delete(socket);
      tapped.destroy();
    });
    parser.emit('connection', tapped);
  };
  const server = pki ? tls.createServer({ cert: pki.certPem, key: pki.keyPem }, onSocket) : net.createServer(onSocket);
  await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    wire: () => Buffer.concat(received),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

/** Every value of a header, case-insensitively, in wire order. */
export function headerValues(rawHeaders: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === name.toLowerCase()) out.push(rawHeaders[i + 1]!);
  }
  return out;
}

/**
 * The forms a secret takes on its way somewhere: as is, and base64 at each of the three alignments it can have
 * inside a longer base64 string (Basic credentials, a tarball of a credentials file, a JSON blob). A needle of the
 * secret alone would miss `Basic base64(user:SECRET)`.
 */
export function leakNeedles(secret: string): Buffer[] {
  const needles = [Buffer.from(secret)];
  for (let pad = 0; pad < 3; pad++) {
    const encoded = Buffer.from('\0'.repeat(pad) + secret).toString('base64');
    // Drop the characters that mix in the padding bytes or the unknown bytes after the secret.
    const start = pad === 0 ? 0 : Math.ceil((pad * 4) / 3);
    const end = Math.floor(((pad + Buffer.byteLength(secret)) * 4) / 3);
    const inner = encoded.slice(start, end);
    if (inner.length >= 12) needles.push(Buffer.from(inner));
  }
  return needles;
}

/** Names of the leaks found: which needle of which secret occurs in `haystack`. */
export function findLeaks(haystack: Buffer, secrets: Record<string, string>): string[] {
  const found: string[] = [];
  for (const [name, secret] of Object.entries(secrets)) {
    leakNeedles(secret).forEach((needle, form) => {
      if (haystack.includes(needle)) found.push(`${name}${form === 0 ? '' : ` (base64, alignment ${form - 1})`}`);
    });
  }
  return found;
}

/** Where the sandbox leaves what the host searches; excluded from its own tarball. */
const CANARY_DIR = '.canary';

/**
 * A bash fragment that copies what the sandbox can see to /workspace/.canary for the host to search: its whole
 * filesystem as a tarball (minus /proc, /sys, the host's read-only /usr and any read-only dependency mount), `env`,
 * and every process's environ, cmdline and open-file names. The host searches rather than the sandbox, because a
 * sandbox-side `grep REAL` would have to be given the real value.
 */
export function canaryDumpScript(excludeMounts: string[] = []): string {
  const dir = `/workspace/${CANARY_DIR}`;
  const excludes = ['proc', 'sys', 'usr', `workspace/${CANARY_DIR}`, ...excludeMounts.map((m) => m.replace(/^\//, ''))]
    .map((p) => `--exclude=./${p}`)
    .join(' ');
  return [
    `mkdir -p ${dir}`,
    `tar -cf ${dir}/fs.tar ${excludes} -C / . 2>/dev/null`,
    `env > ${dir}/env.txt`,
    `for p in /proc/[0-9]*; do cat $p/environ $p/cmdline 2>/dev/null; ls -l $p/fd 2>/dev/null; done > ${dir}/proc.bin`,
    `echo canary_fs_bytes=$(stat -c %s ${dir}/fs.tar)`,
  ].join('\n');
}

export interface CanaryDump {
  fs: Buffer;
  env: Buffer;
  proc: Buffer;
  all: Buffer;
}

/** Removes an earlier run's dump, so a run that fails to write its own cannot pass on stale files. */
export function clearCanaryDump(workspace: string): Promise<void> {
  return rm(path.join(workspace, CANARY_DIR), { recursive: true, force: true });
}

export async function readCanaryDump(workspace: string): Promise<CanaryDump> {
  const dir = path.join(workspace, CANARY_DIR);
  const [fs, env, proc] = await Promise.all(
    ['fs.tar', 'env.txt', 'proc.bin'].map((name) => readFile(path.join(dir, name))),
  );
  return { fs: fs!, env: env!, proc: proc!, all: Buffer.concat([fs!, env!, proc!]) };
}

/**
 * `inspect` of every container and network this airlock process (by owner pid label) created, while the run is live:
 * what anyone with access to the engine can read (command lines, environment, mounts).
 */
export async function inspectRunResources(engine: string, ownerPid: number): Promise<string> {
  const filter = `label=io.airlock.owner-pid=${ownerPid}`;
  const containers = (await execFileAsync(engine, ['ps', '--all', '--filter', filter, '--format', '{{.ID}}'])).stdout
    .split('\n')
    .filter(Boolean);
  const networks = (await execFileAsync(engine, ['network', 'ls', '--filter', filter, '--format', '{{.ID}}'])).stdout
    .split('\n')
    .filter(Boolean);
  const parts: string[] = [];
  if (containers.length > 0) parts.push((await execFileAsync(engine, ['inspect', ...containers])).stdout);
  if (networks.length > 0) parts.push((await execFileAsync(engine, ['network', 'inspect', ...networks])).stdout);
  return parts.join('\n');
}

/** The command lines of every process on this machine right now (`ps` as any local user sees it). */
export async function hostCommandLines(): Promise<Buffer> {
  const lines: Buffer[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      lines.push(await readFile(`/proc/${entry}/cmdline`));
    } catch {
      // The process exited between readdir and read.
    }
  }
  return Buffer.concat(lines);
}

const OUTPUT_FILES = { log: 'airlock.log', text: 'net.log', json: 'net.jsonl' } as const;

/**
 * Flags that send every kind of airlock output to files in `dir` — its own messages with engine command lines
 * (`--debug --log`), and both network logs — so a test can search all of it.
 */
export function allOutputFlags(dir: string): string[] {
  return [
    '--debug',
    '--log',
    path.join(dir, OUTPUT_FILES.log),
    '--network-log',
    path.join(dir, OUTPUT_FILES.text),
    '--network-log-json',
    path.join(dir, OUTPUT_FILES.json),
  ];
}

/** Everything airlock wrote for a run started with `allOutputFlags(dir)`, with its stdout and stderr. */
export async function allOutput(dir: string, run: SandboxRun): Promise<Buffer> {
  const files = await Promise.all(Object.values(OUTPUT_FILES).map((f) => readFile(path.join(dir, f))));
  return Buffer.concat([...files, Buffer.from(run.stdout), Buffer.from(run.stderr)]);
}

export function networkLogText(dir: string): Promise<string> {
  return readFile(path.join(dir, OUTPUT_FILES.text), 'utf8');
}
