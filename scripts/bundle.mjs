// Bundles the two programs that must run without node_modules: the proxy (copied into the proxy image, where
// only the Node runtime exists) and the GitHub Action (committed under dist/action, run directly by the runner).
import { build } from 'esbuild';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outRoot = process.env.AIRLOCK_BUNDLE_OUT ?? path.join(root, 'dist');

const targets = [
  { entry: 'src/proxy/main.ts', out: 'proxy-bundle/airlock-proxy.mjs' },
  { entry: 'src/action/index.ts', out: 'action/index.js' },
];

for (const t of targets) {
  const entry = path.join(root, t.entry);
  if (!existsSync(entry)) throw new Error(`bundle: ${t.entry} is missing`);
  await build({
    entryPoints: [entry],
    outfile: path.join(outRoot, t.out),
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    // Some CommonJS dependencies call require(); give the ESM bundle one.
    banner: { js: "import { createRequire as __airlockCreateRequire } from 'node:module'; const require = __airlockCreateRequire(import.meta.url);" },
    legalComments: 'none',
    logLevel: 'warning',
    // Deterministic output: the Action bundle is committed and compared byte for byte in CI.
    sourcemap: false,
    minify: false,
  });
}
