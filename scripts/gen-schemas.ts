// Writes the JSON Schemas editors use to validate policy files, generated from the same zod schemas the loader
// enforces so the two cannot drift. `--check` fails (exit 1) when the committed files are stale: CI runs it.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { AllowlistSchema } from '../src/protocol/allowlist.js';
import { SandboxConfigSchema } from '../src/protocol/sandbox-config.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');

const outputs: Array<[string, z.ZodType, string]> = [
  ['schemas/sandbox.schema.json', SandboxConfigSchema, 'airlock sandbox.yaml'],
  ['schemas/network-allowlist.schema.json', AllowlistSchema, 'airlock network-allowlist.yaml'],
];

let stale = 0;
for (const [file, schema, title] of outputs) {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  const text = JSON.stringify({ title, ...json }, null, 2) + '\n';
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
