/**
 * The proxy image, assembled by airlock itself: the Node runtime that runs airlock, the shared libraries it links
 * against, the bundled proxy program and a minimal /etc — no registry, no Dockerfile, no package download. It is
 * `import`ed from an in-memory tarball and tagged by a hash of its inputs, so every host that runs the same airlock
 * with the same Node gets the same tag (the CI cache key) and an unchanged input never rebuilds.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { callEngine, mustCallEngine, type Engine } from '../engine/engine.js';
import { SandboxError } from '../errors.js';
import { withBuildLock } from '../host/build-lock.js';
import { airlockPackage } from '../host/package-root.js';
import { writeTar, type TarEntry } from '../host/tar.js';

export const PROXY_IMAGE_NAME = 'airlock-proxy';
/** Bumped whenever the layout below changes, so the tag changes with it. */
const RECIPE = 'airlock-proxy-image/1';
/** The unprivileged user the proxy runs as (no capabilities; low ports come from a namespaced sysctl). */
export const PROXY_UID = 65532;
export const PROXY_NODE = '/airlock/node';
/**
 * V8 flags for the proxy: a small young generation and earlier major collections keep the proxy's RSS near its
 * live heap (≈100 MB instead of ≈150 MB at 200 connections, bench:proxy) for a small throughput cost.
 */
export const PROXY_NODE_FLAGS = ['--max-semi-space-size=2', '--heap-growing-percent=10'];
export const PROXY_PROGRAM = '/airlock/airlock-proxy.mjs';

export function proxyBundlePath(): string {
  return path.join(airlockPackage().root, 'dist', 'proxy-bundle', 'airlock-proxy.mjs');
}

export interface ProxyImageInputs {
  node: string;
  /** Absolute paths of the shared objects node needs, including the dynamic loader. */
  libraries: string[];
  bundle: string;
}

/** `ldd` output → the libraries to copy (vdso has no file; "not found" is fatal). */
export function parseLdd(output: string): string[] {
  const libs: string[] = [];
  for (const line of output.split('\n')) {
    const t = line.trim();
    if (!t || t.startsWith('linux-vdso') || t.startsWith('linux-gate')) continue;
    if (t.includes('not found')) throw new SandboxError(`the Node runtime needs a library that is missing: ${t}`);
    const arrow = /=>\s+(\/\S+)/.exec(t);
    const direct = /^(\/\S+)/.exec(t);
    const lib = arrow?.[1] ?? direct?.[1];
    if (lib) libs.push(lib);
  }
  return [...new Set(libs)];
}

export async function proxyImageInputs(nodeBinary: string = process.execPath): Promise<ProxyImageInputs> {
  const bundle = proxyBundlePath();
  if (!existsSync(bundle)) {
    throw new SandboxError(`the proxy bundle ${bundle} is missing: run \`npm run build\` in the airlock package`);
  }
  const node = await realpath(nodeBinary);
  let libraries: string[];
  try {
    const { stdout } = await promisify(execFile)('ldd', [node], { encoding: 'utf8' });
    libraries = parseLdd(stdout);
  } catch (err) {
    // A statically linked node makes ldd exit 1 with "not a dynamic executable": nothing to copy.
    const text =
      String((err as { stdout?: string; stderr?: string }).stderr ?? '') +
      String((err as { stdout?: string }).stdout ?? '');
    if (/not a dynamic executable|statically linked/.test(text)) libraries = [];
    else if (err instanceof SandboxError) throw err;
    else throw new SandboxError(`cannot list the Node runtime's libraries with ldd: ${(err as Error).message}`);
  }
  return { node, libraries, bundle };
}

/**
 * Tag from the inputs' identities: the bundle's bytes, and for the 100 MB runtime and its libraries their path,
 * size and modification time (hashing their bytes on every run would cost more than the rest of the start-up).
 */
export async function proxyImageHash(inputs?: ProxyImageInputs): Promise<string> {
  const i = inputs ?? (await proxyImageInputs());
  const h = createHash('sha256').update(RECIPE).update('\0').update(process.version).update('\0');
  h.update(PROXY_NODE_FLAGS.join(' ')).update('\0');
  for (const file of [i.node, ...i.libraries]) {
    const s = await stat(file);
    h.update(`${file}\0${s.size}\0${Math.trunc(s.mtimeMs)}\0`);
  }
  h.update(await readFile(i.bundle));
  return h.digest('hex');
}

export function proxyImageTag(hash: string): string {
  return `localhost/${PROXY_IMAGE_NAME}:${hash}`;
}

async function rootfs(i: ProxyImageInputs): Promise<Buffer> {
  const entries: TarEntry[] = [];
  const dirs = new Set<string>();
  const dir = (p: string): void => {
    const parts = p.split('/').filter(Boolean);
    for (let n = 1; n <= parts.length; n++) {
      const d = parts.slice(0, n).join('/');
      if (!dirs.has(d)) {
        dirs.add(d);
        entries.push({ type: 'dir', path: d, mode: d === 'tmp' ? 0o1777 : 0o755 });
      }
    }
  };
  const file = (p: string, content: Buffer, mode = 0o644): void => {
    dir(path.posix.dirname(p));
    entries.push({ type: 'file', path: p, mode, content });
  };
  dir('tmp');
  dir('airlock');
  file(
    'etc/passwd',
    Buffer.from(
      `root:x:0:0:root:/:/sbin/nologin\nairlock-proxy:x:${PROXY_UID}:${PROXY_UID}::/nonexistent:/sbin/nologin\n`,
    ),
  );
  file('etc/group', Buffer.from(`root:x:0:\nairlock-proxy:x:${PROXY_UID}:\n`));
  file('etc/nsswitch.conf', Buffer.from('hosts: files dns\n'));
  file('etc/hosts', Buffer.from('127.0.0.1\tlocalhost\n'));
  for (const lib of i.libraries) file(lib.replace(/^\//, ''), await readFile(lib), 0o755);
  file(PROXY_NODE.slice(1), await readFile(i.node), 0o755);
  file(PROXY_PROGRAM.slice(1), await readFile(i.bundle), 0o644);
  return writeTar(entries);
}

/** Make sure the proxy image exists; build it (once, under a lock shared with concurrent runs) when it does not. */
export async function ensureProxyImage(engine: Engine, onBuild?: (tag: string) => void): Promise<string> {
  const inputs = await proxyImageInputs();
  const tag = proxyImageTag(await proxyImageHash(inputs));
  const present = async () => (await callEngine(engine, ['image', 'inspect', '--format', '{{.Id}}', tag])).code === 0;
  if (await present()) return tag;
  await withBuildLock(tag, async () => {
    if (await present()) return;
    onBuild?.(tag);
    const libDirs = [...new Set(inputs.libraries.map((l) => path.posix.dirname(l)))].join(':');
    await mustCallEngine(
      engine,
      [
        'import',
        '--change',
        `USER ${PROXY_UID}:${PROXY_UID}`,
        '--change',
        `ENV LD_LIBRARY_PATH=${libDirs}`,
        '--change',
        'ENV NODE_ENV=production',
        '--change',
        `ENTRYPOINT ${JSON.stringify([PROXY_NODE, ...PROXY_NODE_FLAGS, PROXY_PROGRAM])}`,
        '--change',
        'WORKDIR /airlock',
        '-',
        tag,
      ],
      `importing the proxy image ${tag}`,
      { input: await rootfs(inputs) },
    );
  });
  return tag;
}
