import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { loadPolicy } from '../../src/cli/config/load.js';
import { ConfigError } from '../../src/cli/errors.js';

/**
 * Every key of sandbox.yaml and network-allowlist.yaml reads its scalars as its schema types them: a string key
 * keeps `010` as written (not 10, not 8), a number key takes a quoted number, a boolean key takes PyYAML's `yes`.
 * The keys are enumerated from the generated JSON schemas (schemas/, checked against the zod schemas by
 * `npm run check:schemas`), so a key added to a schema is covered without being listed anywhere.
 */

type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: JsonSchema | boolean;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
};
type Segment = string | number;
/** A scalar leaf: its key path, and the object or list schema at each step on the way to it. */
type Leaf = { at: Segment[]; containers: JsonSchema[] };

function leaves(schema: JsonSchema, type: string, at: Segment[] = [], containers: JsonSchema[] = []): Leaf[] {
  if (schema.anyOf) return schema.anyOf.flatMap((s) => leaves(s, type, at, containers));
  if (schema.type === type || (Array.isArray(schema.type) && schema.type.includes(type))) return [{ at, containers }];
  const inside = [...containers, schema];
  const out: Leaf[] = [];
  for (const [key, s] of Object.entries(schema.properties ?? {})) out.push(...leaves(s, type, [...at, key], inside));
  // Records get the key `k` (a valid variable and host name), lists the index 0.
  if (typeof schema.additionalProperties === 'object') {
    out.push(...leaves(schema.additionalProperties, type, [...at, 'k'], inside));
  }
  if (schema.items) out.push(...leaves(schema.items, type, [...at, 0], inside));
  return out;
}

/** Valid values for required keys, so that the key under test is the only thing the schema can object to. */
const REQUIRED_EXAMPLES: Record<string, unknown> = {
  value: 'x',
  scopes: ['api.test'],
  headers: ['Authorization'],
  type: 'aws-sigv4',
  access_key_id: 'AKIAIOSFODNN7EXAMPLE',
  secret_access_key: 'example',
  host: 'api.test',
};

/** A document with `scalar` (written verbatim, unquoted) at the leaf, and valid required siblings on the way. */
function documentWith(leaf: Leaf, scalar: string): string {
  const MARK = 'SCALAR_GOES_HERE';
  let value: unknown = MARK;
  for (let i = leaf.at.length - 1; i >= 0; i--) {
    const seg = leaf.at[i]!;
    if (typeof seg === 'number') {
      value = [value];
      continue;
    }
    const object: Record<string, unknown> = {};
    for (const name of leaf.containers[i]?.required ?? []) {
      if (name === seg) continue;
      assert.ok(name in REQUIRED_EXAMPLES, `add an example for the required key '${name}'`);
      object[name] = REQUIRED_EXAMPLES[name];
    }
    object[seg] = value;
    value = object;
  }
  return stringify(value).replace(MARK, scalar);
}

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-scalars-'));
  await mkdir(path.join(dir, '.airlock'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The value at the path after loading, or the error the loader gave. */
async function load(file: 'sandbox.yaml' | 'network-allowlist.yaml', text: string, at: Segment[]) {
  await rm(path.join(dir, '.airlock'), { recursive: true, force: true });
  await mkdir(path.join(dir, '.airlock'));
  await writeFile(path.join(dir, '.airlock', file), text);
  try {
    const policy = await loadPolicy({ cwd: dir }, {});
    const root: unknown = file === 'sandbox.yaml' ? policy.sandbox : policy.allowlist;
    return { value: at.reduce<unknown>((v, k) => (v as Record<Segment, unknown> | undefined)?.[k], root) };
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return { error: err.message };
  }
}

const FILES = [
  { file: 'sandbox.yaml', schema: 'sandbox.schema.json' },
  { file: 'network-allowlist.yaml', schema: 'network-allowlist.schema.json' },
] as const;

describe('scalars are read as the schema types them, for every key', { timeout: 60_000 }, () => {
  for (const { file, schema } of FILES) {
    it(`${file}: a string key keeps 010 as written`, async () => {
      const json = JSON.parse(await readFile(path.join(import.meta.dirname, '../../schemas', schema), 'utf8'));
      const paths = leaves(json as JsonSchema, 'string');
      assert.ok(paths.length >= (file === 'sandbox.yaml' ? 12 : 7), `found ${paths.length} string keys`);
      let kept = 0;
      for (const leaf of paths) {
        const result = await load(file, documentWith(leaf, '010'), leaf.at);
        const where = leaf.at.join('.');
        if ('value' in result) {
          assert.equal(result.value, '010', where);
          kept++;
          // A pattern of the key (a variable name, a path starting with /) may refuse 010; its type never may.
        } else assert.doesNotMatch(result.error, /found a number/, where);
      }
      assert.ok(kept >= paths.length / 2, `only ${kept} of ${paths.length} keys took 010`);
    });
  }

  it('sandbox.yaml: a number key takes a quoted number, a boolean key takes yes/no/on/off', async () => {
    const json = JSON.parse(
      await readFile(path.join(import.meta.dirname, '../../schemas/sandbox.schema.json'), 'utf8'),
    );
    const numbers = [...leaves(json as JsonSchema, 'number'), ...leaves(json as JsonSchema, 'integer')];
    assert.ok(numbers.length >= 3);
    for (const leaf of numbers) {
      const result = await load('sandbox.yaml', documentWith(leaf, '"300"'), leaf.at);
      assert.deepEqual(result, { value: 300 }, leaf.at.join('.'));
    }
    const booleans = leaves(json as JsonSchema, 'boolean');
    assert.ok(booleans.length >= 2);
    for (const leaf of booleans) {
      for (const [scalar, expected] of [
        ['yes', true],
        ['off', false],
      ] as const) {
        const result = await load('sandbox.yaml', documentWith(leaf, scalar), leaf.at);
        assert.deepEqual(result, { value: expected }, `${leaf.at.join('.')}: ${scalar}`);
      }
    }
  });
});
