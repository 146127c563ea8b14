// CI guard: the committed bundles (dist/action/index.js, run by GitHub's runner; dist/proxy/airlock-proxy.mjs,
// copied into the proxy image) must be exactly what the source builds to, so what runs on users' runners is what
// reviewers read in src/. Rebuilds with scripts/bundle.mjs into a temporary directory and compares bytes.
// Run it before `npm run build`, which rewrites dist/. Exit 0 when all equal, 1 when not.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BUNDLES = ['action/index.js', 'proxy-bundle/airlock-proxy.mjs'];
const out = mkdtempSync(path.join(tmpdir(), 'airlock-check-dist-'));
let failed = false;
try {
  const built = spawnSync(process.execPath, [path.join(root, 'scripts', 'bundle.mjs')], {
    cwd: root,
    env: { ...process.env, AIRLOCK_BUNDLE_OUT: out, AIRLOCK_BUNDLE_STRICT: '1' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (built.status !== 0) {
    console.error('check-dist: the bundle build failed');
    process.exit(1);
  }
  for (const name of BUNDLES) {
    const committed = path.join(root, 'dist', name);
    const fresh = path.join(out, name);
    if (!existsSync(committed)) {
      console.error(`check-dist: dist/${name} is not committed; run \`npm run build\` and commit it`);
      failed = true;
      continue;
    }
    const a = readFileSync(committed);
    const b = readFileSync(fresh);
    if (!a.equals(b)) {
      const al = a.toString('utf8').split('\n');
      const bl = b.toString('utf8').split('\n');
      let i = 0;
      while (i < al.length && i < bl.length && al[i] === bl[i]) i++;
      console.error(
        `check-dist: dist/${name} differs from a fresh build (first difference at line ${i + 1}; committed ` +
          `${a.length} bytes, fresh ${b.length} bytes). Run \`npm run build\` and commit it.`,
      );
      failed = true;
    } else {
      console.log(`check-dist: dist/${name} matches the source (${a.length} bytes)`);
    }
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
process.exitCode = failed ? 1 : 0;
