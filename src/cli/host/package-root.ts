import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SandboxError } from '../errors.js';

/**
 * The installed airlock package: the nearest directory above this file whose package.json names airlock. The CLI
 * (dist/cli), the Action's bundle (dist/action) and a source checkout run under tsx all find the same one, which
 * is where the proxy bundle lives and where the version comes from.
 */
export interface AirlockPackage {
  root: string;
  version: string;
}

export function airlockPackage(from: string = fileURLToPath(import.meta.url)): AirlockPackage {
  let dir = path.dirname(from);
  for (;;) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: unknown };
        if (pkg.name === 'airlock') {
          return { root: dir, version: typeof pkg.version === 'string' ? pkg.version : 'unknown' };
        }
      } catch {
        // not ours; keep walking up
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new SandboxError('cannot find the airlock package (its package.json) above ' + from);
    dir = parent;
  }
}
