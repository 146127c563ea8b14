/**
 * Content hash of a repo image's inputs: the Dockerfile and its build context. The tag `airlock-repo:<hash>` changes
 * exactly when something the build can see changes.
 *
 * Deliberate difference from Airut (airut-behaviour.md items 77-78): Airut hashes only the regular files directly in
 * the context directory, so a change under `context/scripts/` reuses a stale image. airlock walks the context
 * recursively (symlinks recorded by their target, not followed — the engine sends them as links too), records the
 * executable bit (COPY preserves it), and frames every field with its length so two different trees can never
 * produce the same byte stream.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';

const FORMAT = 'airlock-image-inputs-v1';

export interface BuildInputs {
  dockerfile: string;
  contextDir: string;
}

function field(hash: Hash, value: string | Buffer): void {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  hash.update(`${bytes.length}:`);
  hash.update(bytes);
}

/** Byte order of the UTF-8 path, so the hash does not depend on locale or on UTF-16 code-unit order. */
function byUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

async function hashFile(hash: Hash, path: string, size: number): Promise<void> {
  hash.update(`${size}:`);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

async function walk(hash: Hash, root: string, relative: string): Promise<void> {
  const names = (await readdir(join(root, relative))).sort(byUtf8);
  for (const name of names) {
    const rel = relative ? `${relative}/${name}` : name;
    const full = join(root, rel);
    const info = await lstat(full);
    if (info.isSymbolicLink()) {
      hash.update('L');
      field(hash, rel);
      field(hash, await readlink(full));
    } else if (info.isDirectory()) {
      hash.update('D');
      field(hash, rel);
      await walk(hash, root, rel);
      hash.update('U');
    } else if (info.isFile()) {
      hash.update(info.mode & 0o111 ? 'X' : 'F');
      field(hash, rel);
      await hashFile(hash, full, info.size);
    }
    // sockets, fifos and devices cannot be sent in a build context; skip them as the engines do
  }
}

/** sha256 hex of the Dockerfile bytes and the whole context tree. A missing context directory hashes as empty. */
export async function hashBuildInputs(inputs: BuildInputs): Promise<string> {
  const hash = createHash('sha256');
  field(hash, FORMAT);
  field(hash, await readFile(inputs.dockerfile));
  let isDir = false;
  try {
    isDir = (await lstat(inputs.contextDir)).isDirectory();
  } catch {
    isDir = false;
  }
  hash.update('C');
  if (isDir) await walk(hash, inputs.contextDir, '');
  hash.update('E');
  return hash.digest('hex');
}

export const REPO_IMAGE_NAME = 'airlock-repo';

export function repoImageTag(hash: string): string {
  return `${REPO_IMAGE_NAME}:${hash}`;
}
