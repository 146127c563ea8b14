// Writes the JSON Schemas editors use to validate policy files, generated from the same zod schemas the loader
// enforces so the two cannot drift, and the sandbox's seccomp profile exactly as `airlock run` hands it to the
// engine, so a change to it shows up in review as a diff of the JSON. `--check` fails (exit 1) when the committed
// files are stale: CI runs it.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { AllowlistSchema } from '../src/protocol/allowlist.js';
import { SandboxConfigSchema } from '../src/protocol/sandbox-config.js';
import { seccompProfileJson } from '../src/cli/engine/seccomp-profile.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');

const outputs: Array<[string, z.ZodType, string]> = [
  ['schemas/sandbox.schema.json', SandboxConfigSchema, 'airlock sandbox.yaml'],
  ['schemas/network-allowlist.schema.json', AllowlistSchema, 'airlock network-allowlist.yaml'],
];

const files: Array<[string, string]> = outputs.map(([file, schema, title]) => {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return [file, JSON.stringify({ title, ...json }, null, 2) + '\n'];
});
files.push(['docs/seccomp-profile.json', seccompProfileJson()]);

let stale = 0;
for (const [file, text] of files) {
  const target = path.join(root, file);
  if (check) {
    let current = '';
    try {
      current = readFileSync(target, 'utf8');
    } catch {
      /* missing counts as stale */
    }
    if (current !== text) {
      console.error(`${file} is stale: run npm run schemas and commit the result`);
      stale++;
    }
  } else {
    writeFileSync(target, text);
    console.error(`wrote ${file}`);
  }
}
process.exitCode = stale ? 1 : 0;
