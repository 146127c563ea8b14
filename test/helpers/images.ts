/**
 * Test images, built locally because the machine has no container registry: a Debian bookworm rootfs made once
 * with debootstrap from the host's apt mirror, kept as a tarball in a cache directory so later runs (and the Docker
 * suite) import it instead of bootstrapping again. Image storage is per user (rootless Podman keeps its own under
 * ~/.local/share/containers), so each user imports the image itself; the tarball cache is shared and may be
 * read-only to all but root — then this user's import locks live in its own temp directory.
 */
import { spawn } from 'node:child_process';
import { constants, existsSync } from 'node:fs';
import { access, mkdir, mkdtemp, open, readFile, readdir, rename, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const TEST_IMAGE = 'localhost/airlock-test-debian:bookworm';
export const TEST_CACHE_DIR = process.env.AIRLOCK_TEST_CACHE ?? '/var/cache/airlock-test';
const ROOTFS_TARBALL = join(TEST_CACHE_DIR, 'debian-bookworm-rootfs.tar');
const PACKAGES = ['ca-certificates', 'curl', 'git', 'python3', 'iproute2', 'procps'];

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

export function exec(argv: string[], input?: string): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    // A command that exits before reading its (empty) stdin must not crash the test with EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

async function mustExec(argv: string[]): Promise<string> {
  const r = await exec(argv);
  if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}: ${r.stderr.slice(-2000)}`);
  return r.stdout;
}

/** The Debian mirror the host's apt uses, so debootstrap needs no other network access. */
async function aptMirror(): Promise<string> {
  const files = ['/etc/apt/sources.list'];
  if (existsSync('/etc/apt/sources.list.d')) {
    for (const f of await readdir('/etc/apt/sources.list.d')) files.push(join('/etc/apt/sources.list.d', f));
  }
  for (const f of files) {
    const text = await readFile(f, 'utf8').catch(() => '');
    const deb822 = /^URIs:\s*(\S+\/debian)\/?\s*$/m.exec(text);
    if (deb822) return deb822[1]!;
    const oneLine = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\/?\s+bookworm\s/m.exec(text);
    if (oneLine) return oneLine[1]!;
  }
  return 'http://deb.debian.org/debian';
}

/** Where this user's locks go: the shared cache when it may write there, else a directory of its own. */
async function lockDir(): Promise<string> {
  try {
    await access(TEST_CACHE_DIR, constants.W_OK);
    return TEST_CACHE_DIR;
  } catch {
    const own = join(tmpdir(), `airlock-test-locks-${process.getuid?.() ?? 'user'}`);
    await mkdir(own, { recursive: true, mode: 0o700 });
    return own;
  }
}

/** A cross-process lock, so two test files never bootstrap the same rootfs (or import the same image) at once. */
async function withLock<T>(name: string, body: () => Promise<T>): Promise<T> {
  const lockPath = join(await lockDir(), `${name}.lock`);
  for (;;) {
    try {
      const handle = await open(lockPath, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const owner = Number(await readFile(lockPath, 'utf8').catch(() => '0'));
      if (owner > 0 && !isAlive(owner)) await unlink(lockPath).catch(() => undefined);
      else await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await body();
  } finally {
    await unlink(lockPath).catch(() => undefined);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Path of the cached Debian rootfs tarball, bootstrapping it on first use (a few minutes, once per machine). */
export async function ensureTestRootfs(): Promise<string> {
  await mkdir(TEST_CACHE_DIR, { recursive: true });
  if (existsSync(ROOTFS_TARBALL)) return ROOTFS_TARBALL;
  return withLock('rootfs', async () => {
    if (existsSync(ROOTFS_TARBALL)) return ROOTFS_TARBALL;
    const dir = await mkdtemp(join(TEST_CACHE_DIR, 'rootfs-'));
    try {
      const mirror = await aptMirror();
      await mustExec(['debootstrap', '--variant=minbase', `--include=${PACKAGES.join(',')}`, 'bookworm', dir, mirror]);
      const partial = `${ROOTFS_TARBALL}.partial`;
      await mustExec(['tar', '-C', dir, '--numeric-owner', '-cf', partial, '.']);
      await rename(partial, ROOTFS_TARBALL);
      return ROOTFS_TARBALL;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}

/** Tag of the Debian test image in `engine`, importing the cached rootfs when the engine does not have it yet. */
export async function ensureTestImage(engine: 'podman' | 'docker' = 'podman'): Promise<string> {
  const present = await exec([engine, 'image', 'inspect', '--format', '{{.Id}}', TEST_IMAGE]);
  if (present.code === 0) return TEST_IMAGE;
  const tarball = await ensureTestRootfs();
  return withLock(`import-${engine}`, async () => {
    const again = await exec([engine, 'image', 'inspect', '--format', '{{.Id}}', TEST_IMAGE]);
    if (again.code === 0) return TEST_IMAGE;
    await mustExec([engine, 'import', '--change', 'CMD ["/bin/bash"]', tarball, TEST_IMAGE]);
    return TEST_IMAGE;
  });
}
