/**
 * Offline package sources for the workload benchmark, generated (deterministically) rather than downloaded: an npm
 * project whose lockfile names ~100 tarballs, and a PEP 503 simple index of ~30 wheels. Sizes are spread like
 * real registries' (most packages small, a few large) and the content is word salad, so gzip/deflate ratios are
 * realistic. Served by bench/real/upstream-server.ts under /npm/ and /simple/ + /packages/.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { crc32, deflateRawSync, gzipSync } from 'node:zlib';
import { writeTar, type TarEntry } from '../../src/cli/host/tar.js';

/** A small deterministic PRNG (mulberry32), so every run serves the same bytes. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = [
  'const let function return value module export import require object array string number length index',
  'config options callback promise resolve reject error result buffer stream request response header parse',
  'format encode decode token node path file read write close open state update render event listener',
]
  .join(' ')
  .split(' ');

function text(rand: () => number, bytes: number): Buffer {
  const parts: string[] = [];
  let size = 0;
  while (size < bytes) {
    const line = Array.from({ length: 4 + Math.floor(rand() * 8) }, () => WORDS[Math.floor(rand() * WORDS.length)])
      .join(' ')
      .concat(rand() < 0.3 ? ` ${Math.floor(rand() * 1e6)};\n` : ';\n');
    parts.push(line);
    size += line.length;
  }
  return Buffer.from(parts.join('').slice(0, bytes));
}

/** Log-uniform between min and max: many small packages, a few large ones. */
function logUniform(rand: () => number, min: number, max: number): number {
  return Math.round(Math.exp(Math.log(min) + rand() * (Math.log(max) - Math.log(min))));
}

async function put(file: string, content: Buffer | string): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, content);
}

export interface NpmProject {
  /** package.json and package-lock.json of the project to `npm ci`. */
  packageJson: string;
  lockfile: string;
  packages: number;
}

/**
 * `count` packages under `<served>/npm/`; the first quarter are the project's direct dependencies and each depends
 * on three of the rest, all hoisted to node_modules/ as npm would lay them out.
 */
export async function generateNpmRegistry(served: string, registryUrl: string, count = 100): Promise<NpmProject> {
  const rand = random(17);
  const name = (i: number) => `bench-pkg-${String(i).padStart(3, '0')}`;
  const direct = Math.ceil(count / 4);
  const depsOf = (i: number): string[] =>
    i < direct
      ? [0, 1, 2]
          .map((k) => direct + i * 3 + k)
          .filter((j) => j < count)
          .map(name)
      : [];
  const lockPackages: Record<string, unknown> = {};
  for (let i = 0; i < count; i++) {
    const pkg = name(i);
    const dependencies = Object.fromEntries(depsOf(i).map((d) => [d, '^1.0.0']));
    const manifest = { name: pkg, version: '1.0.0', main: 'index.js', license: 'MIT', dependencies };
    const total = logUniform(rand, 2_000, 600_000);
    const files = 2 + Math.floor(rand() * 20);
    const entries: TarEntry[] = [
      { type: 'dir', path: 'package', mode: 0o755 },
      { type: 'file', path: 'package/package.json', mode: 0o644, content: Buffer.from(JSON.stringify(manifest)) },
      { type: 'file', path: 'package/index.js', mode: 0o644, content: text(rand, 200) },
      { type: 'dir', path: 'package/lib', mode: 0o755 },
    ];
    for (let f = 0; f < files; f++) {
      entries.push({ type: 'file', path: `package/lib/m${f}.js`, mode: 0o644, content: text(rand, total / files) });
    }
    const tgz = gzipSync(writeTar(entries));
    const tarballPath = `${pkg}/-/${pkg}-1.0.0.tgz`;
    await put(join(served, 'npm', tarballPath), tgz);
    lockPackages[`node_modules/${pkg}`] = {
      version: '1.0.0',
      resolved: `${registryUrl}${tarballPath}`,
      integrity: `sha512-${createHash('sha512').update(tgz).digest('base64')}`,
      license: 'MIT',
      ...(Object.keys(dependencies).length ? { dependencies } : {}),
    };
  }
  const rootDeps = Object.fromEntries(Array.from({ length: direct }, (_, i) => [name(i), '^1.0.0']));
  const project = { name: 'bench-project', version: '1.0.0', private: true, dependencies: rootDeps };
  const lock = {
    name: 'bench-project',
    version: '1.0.0',
    lockfileVersion: 3,
    requires: true,
    packages: { '': { name: 'bench-project', version: '1.0.0', dependencies: rootDeps }, ...lockPackages },
  };
  return {
    packageJson: `${JSON.stringify(project, null, 2)}\n`,
    lockfile: `${JSON.stringify(lock, null, 2)}\n`,
    packages: count,
  };
}

// ---------- wheels ----------

interface ZipFile {
  name: string;
  content: Buffer;
}

/** A zip archive (deflated entries, no extras): enough for a wheel. */
function zip(files: ZipFile[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const f of files) {
    const name = Buffer.from(f.name);
    const data = deflateRawSync(f.content);
    const crc = crc32(f.content);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0, 6);
    local.writeUInt16LE(8, 8);
    local.writeUInt32LE(0, 10);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(f.content.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0, 8);
    central.writeUInt16LE(8, 10);
    central.writeUInt32LE(0, 12);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(f.content.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE((0o100644 * 0x10000) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, data);
    centrals.push(central, name);
    offset += local.length + name.length + data.length;
  }
  const centralSize = centrals.reduce((n, b) => n + b.length, 0);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(files.length, 8);
  end.writeUInt16LE(files.length, 10);
  end.writeUInt32LE(centralSize, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, ...centrals, end]);
}

const recordHash = (b: Buffer) => `sha256=${createHash('sha256').update(b).digest('base64url')}`;

export interface PythonIndex {
  /** What to `pip install`: the top of the dependency tree. */
  requirements: string[];
  wheels: number;
}

/** `count` wheels under `<served>/packages/` and their PEP 503 pages under `<served>/simple/`. */
export async function generatePythonIndex(served: string, count = 30): Promise<PythonIndex> {
  const rand = random(29);
  const project = (i: number) => `bench-wheel-${String(i).padStart(2, '0')}`;
  const top = Math.ceil(count / 3);
  const requires = (i: number): string[] =>
    i < top
      ? [0, 1]
          .map((k) => top + i * 2 + k)
          .filter((j) => j < count)
          .map(project)
      : [];
  const links: string[] = [];
  for (let i = 0; i < count; i++) {
    const dist = project(i).replace(/-/g, '_');
    const distInfo = `${dist}-1.0.0.dist-info`;
    const files: ZipFile[] = [{ name: `${dist}/__init__.py`, content: text(rand, 300) }];
    const modules = 1 + Math.floor(rand() * 12);
    const total = logUniform(rand, 2_000, 800_000);
    for (let m = 0; m < modules; m++) files.push({ name: `${dist}/m${m}.py`, content: text(rand, total / modules) });
    const metadata = [
      'Metadata-Version: 2.1',
      `Name: ${project(i)}`,
      'Version: 1.0.0',
      ...requires(i).map((r) => `Requires-Dist: ${r}`),
      '',
    ].join('\n');
    files.push(
      { name: `${distInfo}/METADATA`, content: Buffer.from(metadata) },
      {
        name: `${distInfo}/WHEEL`,
        content: Buffer.from(
          'Wheel-Version: 1.0\nGenerator: airlock-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n',
        ),
      },
      { name: `${distInfo}/top_level.txt`, content: Buffer.from(`${dist}\n`) },
    );
    const record = files.map((f) => `${f.name},${recordHash(f.content)},${f.content.length}`).join('\n');
    files.push({ name: `${distInfo}/RECORD`, content: Buffer.from(`${record}\n${distInfo}/RECORD,,\n`) });
    const wheel = zip(files);
    const file = `${dist}-1.0.0-py3-none-any.whl`;
    await put(join(served, 'packages', file), wheel);
    const sha = createHash('sha256').update(wheel).digest('hex');
    await put(
      join(served, 'simple', project(i), 'index.html'),
      `<!DOCTYPE html>\n<html><body><a href="../../packages/${file}#sha256=${sha}">${file}</a></body></html>\n`,
    );
    links.push(`<a href="${project(i)}/">${project(i)}</a>`);
  }
  await put(join(served, 'simple', 'index.html'), `<!DOCTYPE html>\n<html><body>${links.join('\n')}</body></html>\n`);
  return { requirements: Array.from({ length: top }, (_, i) => project(i)), wheels: count };
}
