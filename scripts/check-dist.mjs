// CI guard: the committed Action bundle (dist/action/index.js) must be exactly what the source builds to, so what
// runs on users' runners is what reviewers read in src/. Rebuilds with scripts/bundle.mjs into a temporary
// directory (same options, same working directory) and compares bytes. Exit 0 when equal, 1 when not.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const committed = path.join(root, 'dist', 'action', 'index.js');
const out = mkdtempSync(path.join(tmpdir(), 'airlock-check-dist-'));
try {
  const built = spawnSync(process.execPath, [path.join(root, 'scripts', 'bundle.mjs')], {
    cwd: root,
    env: { ...process.env, AIRLOCK_BUNDLE_OUT: out },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (built.status !== 0) {
    console.error('check-dist: the bundle build failed');
    process.exit(1);
  }
  const fresh = path.join(out, 'action', 'index.js');
  if (!existsSync(committed)) {
    console.error('check-dist: dist/action/index.js is not committed; run `npm run build` and commit it');
    process.exit(1);
  }
  const a = readFileSync(committed);
  const b = readFileSync(fresh);
  if (!a.equals(b)) {
    const al = a.toString('utf8').split('\n');
    const bl = b.toString('utf8').split('\n');
    let i = 0;
    while (i < al.length && i < bl.length && al[i] === bl[i]) i++;
    console.error(
      `check-dist: dist/action/index.js differs from a fresh build of src/action (first difference at line ${i + 1};` +
        ` committed ${a.length} bytes, fresh ${b.length} bytes). Run \`npm run build\` and commit dist/action/index.js.`,
    );
    process.exit(1);
  }
  console.log(`check-dist: dist/action/index.js matches the source (${a.length} bytes)`);
} finally {
  rmSync(out, { recursive: true, force: true });
}
