/**
 * The embedded default image, used when the repository has neither a Dockerfile nor `image:`: a "host toolchain"
 * image. Its rootfs is tiny and built here, without a registry: a fresh /etc (root and nobody, hosts, nsswitch,
 * the host's CA bundle, the host's alternatives links and loader cache) and empty mount points. At run time the
 * host's /usr is bind-mounted read-only, plus the merged-usr links (/bin → usr/bin, …) — or, on a host without
 * merged /usr, those directories read-only too — so `airlock run -- node test.js` runs the host's node with zero
 * config. It exposes the host's installed programs and libraries, nothing else of the host (see docs/images.md).
 */
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { mustCallEngine, type Engine } from '../engine/engine.js';
import type { BindMount } from '../engine/run-args.js';
import { writeTar, type TarEntry } from '../host/tar.js';

export const DEFAULT_IMAGE_NAME = 'airlock-default';

/** Top-level directories that merged-usr systems turn into links into /usr. */
const USR_SIBLINGS = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];

/** Where distributions keep the CA bundle; the first that exists on the host is copied to the same path. */
const CA_BUNDLES = [
  'etc/ssl/certs/ca-certificates.crt',
  'etc/pki/tls/certs/ca-bundle.crt',
  'etc/ssl/ca-bundle.pem',
  'etc/ssl/cert.pem',
];

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n';
const GROUP = 'root:x:0:\nnogroup:x:65534:\n';
const HOSTS = '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n';
const NSSWITCH =
  'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n';

export interface HostToolchain {
  rootfs: Buffer;
  /** Read-only bind mounts from the host that make the toolchain visible. */
  mounts: BindMount[];
}

async function kindOf(path: string): Promise<'dir' | 'symlink' | 'file' | null> {
  try {
    const info = await lstat(path);
    return info.isSymbolicLink() ? 'symlink' : info.isDirectory() ? 'dir' : info.isFile() ? 'file' : null;
  } catch {
    return null;
  }
}

/** Describe the image for the host whose root is `hostRoot` (a parameter so tests can use a fake host tree). */
export async function describeHostToolchain(hostRoot = '/'): Promise<HostToolchain> {
  const host = (p: string): string => join(hostRoot, p);
  const entries: TarEntry[] = [];
  const mounts: BindMount[] = [{ source: host('usr'), target: '/usr', readOnly: true }];
  const dir = (path: string, mode = 0o755): void => void entries.push({ type: 'dir', path, mode });
  const file = (path: string, content: string | Buffer, mode = 0o644): void =>
    void entries.push({ type: 'file', path, mode, content: Buffer.from(content) });

  for (const name of ['dev', 'etc', 'home', 'proc', 'run', 'sys', 'usr', 'var', 'workspace', 'mnt', 'opt']) dir(name);
  dir('root', 0o700);
  dir('tmp', 0o1777);
  dir('var/tmp', 0o1777);
  for (const name of USR_SIBLINGS) {
    const kind = await kindOf(host(name));
    if (kind === 'symlink' && name === 'sbin') {
      // Docker's --init bind-mounts its init at /sbin/docker-init; through a /sbin → usr/sbin link that target
      // would lie on the read-only host /usr and the container could not start. So /sbin is a real directory here
      // whose entries link to the host's /usr/sbin programs.
      dir(name);
      const target = await readlink(host(name));
      for (const program of (await readdir(host(name)).catch(() => [])).sort()) {
        entries.push({ type: 'symlink', path: `${name}/${program}`, target: join('/', target, program) });
      }
    } else if (kind === 'symlink') {
      entries.push({ type: 'symlink', path: name, target: await readlink(host(name)) });
    } else if (kind === 'dir') {
      dir(name);
      mounts.push({ source: host(name), target: `/${name}`, readOnly: true });
    }
  }

  file('etc/passwd', PASSWD);
  file('etc/group', GROUP);
  file('etc/hosts', HOSTS);
  file('etc/nsswitch.conf', NSSWITCH);
  file('etc/hostname', 'airlock\n');
  // The loader cache lists the host's libraries under /usr; without it, libraries outside the default paths fail.
  const ldCache = await readFile(host('etc/ld.so.cache')).catch(() => null);
  if (ldCache) file('etc/ld.so.cache', ldCache);
  if ((await kindOf(host('etc/os-release'))) === 'symlink') {
    entries.push({ type: 'symlink', path: 'etc/os-release', target: await readlink(host('etc/os-release')) });
  }
  // Debian's update-alternatives links (/usr/bin/awk → /etc/alternatives/awk → /usr/bin/mawk) dangle otherwise.
  if ((await kindOf(host('etc/alternatives'))) === 'dir') {
    dir('etc/alternatives');
    for (const name of (await readdir(host('etc/alternatives'))).sort()) {
      const path = join('etc/alternatives', name);
      if ((await kindOf(host(path))) === 'symlink') {
        entries.push({ type: 'symlink', path, target: await readlink(host(path)) });
      }
    }
  }
  for (const bundle of CA_BUNDLES) {
    const content = await readFile(host(bundle)).catch(() => null);
    if (!content) continue;
    const parts = bundle.split('/');
    for (let i = 2; i < parts.length; i++) dir(parts.slice(0, i).join('/'));
    file(bundle, content);
    if (bundle !== 'etc/ssl/certs/ca-certificates.crt') {
      dir('etc/ssl');
      dir('etc/ssl/certs');
      entries.push({ type: 'symlink', path: 'etc/ssl/certs/ca-certificates.crt', target: `/${bundle}` });
    }
    break;
  }
  const openssl = await readFile(host('etc/ssl/openssl.cnf')).catch(() => null);
  if (openssl) {
    dir('etc/ssl');
    file('etc/ssl/openssl.cnf', openssl);
  }
  return { rootfs: writeTar(dedupe(entries)), mounts };
}

/** Directories may be declared twice (parents of several files); the archive needs each once, first wins. */
function dedupe(entries: TarEntry[]): TarEntry[] {
  const seen = new Set<string>();
  return entries.filter((e) => {
    if (seen.has(e.path)) return false;
    seen.add(e.path);
    return true;
  });
}

export function defaultImageTag(rootfs: Buffer): string {
  return `${DEFAULT_IMAGE_NAME}:${createHash('sha256').update(rootfs).digest('hex')}`;
}

/** `import` the rootfs as an image; the tag is the content hash, so an existing tag is already correct. */
export async function importHostToolchain(engine: Engine, tag: string, rootfs: Buffer): Promise<void> {
  await mustCallEngine(
    engine,
    [
      'import',
      '--change',
      'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      '--change',
      'WORKDIR /workspace',
      '-',
      tag,
    ],
    `importing the embedded default image ${tag}`,
    { input: rootfs },
  );
}
