import { SandboxError } from '../errors.js';

/**
 * A minimal, deterministic ustar writer for the rootfs tarballs airlock imports as images (the default image, the
 * proxy image): all entries owned by root, mtime 0, so the same inputs always give the same bytes (and the same
 * image tag).
 */

export type TarEntry =
  | { type: 'dir'; path: string; mode: number }
  | { type: 'file'; path: string; mode: number; content: Buffer }
  | { type: 'symlink'; path: string; target: string };

const BLOCK = 512;

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

function splitName(path: string): { name: string; prefix: string } {
  if (Buffer.byteLength(path) <= 100) return { name: path, prefix: '' };
  const cut = path.lastIndexOf('/', 155);
  const name = path.slice(cut + 1);
  const prefix = path.slice(0, cut);
  if (cut <= 0 || Buffer.byteLength(name) > 100 || Buffer.byteLength(prefix) > 155) {
    throw new SandboxError(`cannot pack ${path} into an image: ustar paths are at most 255 bytes`);
  }
  return { name, prefix };
}

function header(entry: TarEntry, size: number): Buffer {
  const block = Buffer.alloc(BLOCK, 0);
  const path = entry.type === 'dir' ? `${entry.path.replace(/\/$/, '')}/` : entry.path;
  const { name, prefix } = splitName(path);
  if (entry.type === 'symlink' && Buffer.byteLength(entry.target) > 100) {
    throw new SandboxError(
      `cannot pack the symlink ${entry.path} into an image: ustar link targets are at most 100 bytes`,
    );
  }
  block.write(name, 0, 100, 'utf8');
  block.write(octal(entry.type === 'symlink' ? 0o777 : entry.mode, 8), 100, 8, 'ascii');
  block.write(octal(0, 8), 108, 8, 'ascii');
  block.write(octal(0, 8), 116, 8, 'ascii');
  block.write(octal(size, 12), 124, 12, 'ascii');
  block.write(octal(0, 12), 136, 12, 'ascii');
  block.write(' '.repeat(8), 148, 8, 'ascii');
  block.write(entry.type === 'file' ? '0' : entry.type === 'dir' ? '5' : '2', 156, 1, 'ascii');
  if (entry.type === 'symlink') block.write(entry.target, 157, 100, 'utf8');
  block.write('ustar\0', 257, 6, 'ascii');
  block.write('00', 263, 2, 'ascii');
  block.write('root', 265, 32, 'ascii');
  block.write('root', 297, 32, 'ascii');
  block.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(octal(sum, 7) + ' ', 148, 8, 'ascii');
  return block;
}

export function writeTar(entries: TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const content = entry.type === 'file' ? entry.content : Buffer.alloc(0);
    parts.push(header(entry, content.length));
    if (content.length > 0) {
      parts.push(content);
      const pad = (BLOCK - (content.length % BLOCK)) % BLOCK;
      if (pad) parts.push(Buffer.alloc(pad, 0));
    }
  }
  parts.push(Buffer.alloc(BLOCK * 2, 0));
  return Buffer.concat(parts);
}
