import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { z } from 'zod';
import { AllowlistSchema, EMPTY_ALLOWLIST, type Allowlist } from '../../protocol/allowlist.js';
import { lintAllowlist } from '../../protocol/allowlist-lint.js';
import { nearest } from '../../protocol/edit-distance.js';
import { SandboxConfigSchema, type SandboxConfig } from '../../protocol/sandbox-config.js';
import { ConfigError } from '../errors.js';
import type { LoadedPolicy, PolicyLocation } from './types.js';
import {
  dottedPath,
  EnvRef,
  parseYamlSource,
  problemAt,
  scalarSource,
  type KeyPath,
  type YamlSource,
} from './yaml-source.js';

/**
 * Finds, reads and validates the trusted policy (sandbox.yaml, network-allowlist.yaml, container/Dockerfile).
 * Every file is optional, but a file that is named explicitly must exist, and anything present must be valid:
 * a typo in a security policy is an error, never a silent default.
 */

async function exists(p: string): Promise<'file' | 'dir' | null> {
  try {
    const s = await stat(p);
    return s.isDirectory() ? 'dir' : 'file';
  } catch {
    return null;
  }
}

async function readText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(`${file}: cannot read ${what} (${code})`);
  }
}

type ZodDef = Record<string, unknown> & { type: string };

function defOf(schema: unknown): ZodDef | undefined {
  return (schema as { _zod?: { def?: ZodDef } })._zod?.def;
}

/** The schema itself without optional/default/transform wrappers; a union stands for all its options. */
function unwrapped(schema: unknown): unknown[] {
  const def = defOf(schema);
  if (!def) return [schema];
  switch (def.type) {
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'catch':
    case 'readonly':
    case 'nonoptional':
      return unwrapped(def.innerType);
    case 'pipe':
      return unwrapped(def.in);
    case 'union':
      return (def.options as unknown[]).flatMap(unwrapped);
    default:
      return [schema];
  }
}

/** Every schema that could judge the value at a key path (several where a union offers several shapes). */
function schemasAt(schema: z.ZodType, p: KeyPath): unknown[] {
  let current = unwrapped(schema);
  for (const seg of p) {
    current = current.flatMap((s) => {
      const def = defOf(s);
      if (def?.type === 'object') {
        const field = (def.shape as Record<string, unknown>)[String(seg)];
        return field === undefined ? [] : unwrapped(field);
      }
      if (def?.type === 'record') return unwrapped(def.valueType);
      if (def?.type === 'array' && typeof seg === 'number') return unwrapped(def.element);
      return [];
    });
  }
  return current;
}

type ScalarKind = 'string' | 'number' | 'boolean';

/** The scalar types the schema accepts at a key path. */
function scalarKindsAt(schema: z.ZodType, p: KeyPath): Set<ScalarKind> {
  const kinds = new Set<ScalarKind>();
  for (const s of schemasAt(schema, p)) {
    const def = defOf(s);
    if (def?.type === 'string' || def?.type === 'enum') kinds.add('string');
    else if (def?.type === 'number' || def?.type === 'int') kinds.add('number');
    else if (def?.type === 'boolean') kinds.add('boolean');
    else if (def?.type === 'literal') {
      for (const v of def.values as unknown[]) {
        const t = typeof v;
        if (t === 'string' || t === 'number' || t === 'boolean') kinds.add(t);
      }
    }
  }
  return kinds;
}

const YAML_TRUE = ['true', '1', 'yes', 'on'];
const YAML_FALSE = ['false', '0', 'no', 'off'];

/**
 * Reads a scalar the way the schema wants it at its key path, so that a key added to a schema is read correctly
 * without being listed anywhere: where the schema wants a string, the scalar's text as written (`010` stays `010`,
 * not 8); where it wants a number, a quoted number is that number; where it wants a boolean, PyYAML's
 * `yes/no/on/off` are accepted (Airut reads them so). Anything else is left for the schema to judge.
 */
function coerceScalar(src: YamlSource, schema: z.ZodType, value: unknown, at: KeyPath): unknown {
  if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') return value;
  const kinds = scalarKindsAt(schema, at);
  if (kinds.has(typeof value as ScalarKind)) return value;
  if (kinds.has('string')) return scalarSource(src, at) ?? String(value);
  if (typeof value !== 'string') return value;
  if (kinds.has('number') && /^\s*[\d.]+\s*$/.test(value)) return Number(value);
  if (kinds.has('boolean')) {
    const v = value.trim().toLowerCase();
    if (YAML_TRUE.includes(v)) return true;
    if (YAML_FALSE.includes(v)) return false;
  }
  return value;
}

/** What reading one file found: its problems (each one line), and the key paths already reported. */
interface FileProblems {
  errors: string[];
  reported: Set<string>;
}

function resolveValues(
  src: YamlSource,
  schema: z.ZodType,
  value: unknown,
  at: KeyPath,
  env: NodeJS.ProcessEnv,
  envRefs: Map<string, string>,
  problems: FileProblems,
): unknown {
  if (value instanceof EnvRef) {
    let problem: string | null = null;
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(value.name)) {
      problem = `!env needs a variable name, e.g. \`!env GH_TOKEN\` (got "${value.name}")`;
    } else if (env[value.name] === undefined) {
      problem = `environment variable '${value.name}' is not set (set it, or remove the entry)`;
    }
    if (problem !== null) {
      problems.errors.push(problemAt(src, at, problem));
      problems.reported.add(dottedPath(at));
      // A placeholder of the right type, so the schema judges the rest of the file without repeating this problem.
      return '';
    }
    envRefs.set(dottedPath(at), value.name);
    return env[value.name];
  }
  if (Array.isArray(value))
    return value.map((v, i) => resolveValues(src, schema, v, [...at, i], env, envRefs, problems));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = resolveValues(src, schema, v, [...at, k], env, envRefs, problems);
    }
    return out;
  }
  return coerceScalar(src, schema, value, at);
}

/** The keys an object at a key path accepts (for "did you mean"). */
function keysAt(schema: z.ZodType, p: KeyPath): string[] {
  return schemasAt(schema, p).flatMap((s) => {
    const def = defOf(s);
    return def?.type === 'object' ? Object.keys(def.shape as object) : [];
  });
}

/** Every schema problem in a file as a line, or the parsed value when there is none. */
function validate<S extends z.ZodType>(
  schema: S,
  src: YamlSource,
  value: unknown,
  problems: FileProblems,
): z.output<S> | undefined {
  const result = schema.safeParse(value);
  if (result.success) return problems.errors.length === 0 ? result.data : undefined;
  const issues = result.error.issues;
  // A misspelt key also leaves its real key "missing"; the misspelling is what the user needs to hear about.
  const misspeltAt = new Set(
    issues.filter((i) => i.code === 'unrecognized_keys').map((i) => dottedPath(keyPath(i.path))),
  );
  for (const issue of issues) {
    const at = keyPath(issue.path);
    if (problems.reported.has(dottedPath(at))) continue;
    if (issue.code === 'unrecognized_keys') {
      const valid = keysAt(schema, at);
      for (const key of issue.keys) {
        const near = nearest(key, valid);
        const hint = near ? `did you mean '${near}'?` : valid.length ? `valid keys: ${valid.join(', ')}` : '';
        problems.errors.push(problemAt(src, [...at, key], `unknown key '${key}'${hint ? '; ' + hint : ''}`, true));
      }
      continue;
    }
    if (issue.code === 'invalid_type') {
      const got =
        value === null
          ? null
          : at.reduce<unknown>((v, k) => (v as Record<string | number, unknown> | undefined)?.[k], value);
      if (got === null || got === undefined) {
        if (misspeltAt.has(dottedPath(at.slice(0, -1)))) continue;
        problems.errors.push(problemAt(src, at, `value is missing (expected ${issue.expected})`));
      } else {
        const kind = Array.isArray(got) ? 'a list' : typeof got === 'object' ? 'a mapping' : `a ${typeof got}`;
        problems.errors.push(problemAt(src, at, `expected ${describeExpected(issue.expected)}, found ${kind}`));
      }
      continue;
    }
    problems.errors.push(problemAt(src, at, issue.message));
  }
  return undefined;
}

function keyPath(path: ReadonlyArray<PropertyKey>): Array<string | number> {
  return path.filter((x): x is string | number => typeof x !== 'symbol');
}

function describeExpected(expected: string): string {
  switch (expected) {
    case 'object':
    case 'record':
      return 'a mapping (key: value)';
    case 'array':
      return 'a list (- item)';
    case 'string':
      return 'a string';
    case 'boolean':
      return 'true or false';
    case 'number':
      return 'a number';
    case 'int':
      return 'a whole number';
    default:
      return expected;
  }
}

interface LoadedFile<T> {
  value: T | undefined;
  src: YamlSource | null;
}

/** Reads, resolves and validates one policy file; every problem goes to `errors`, and `value` is then undefined. */
async function loadYamlFile<S extends z.ZodType>(
  file: string,
  schema: S,
  allowEnvTags: boolean,
  env: NodeJS.ProcessEnv,
  envRefs: Map<string, string>,
  errors: string[],
): Promise<LoadedFile<z.output<S>>> {
  let src: YamlSource;
  try {
    src = parseYamlSource(file, await readText(file, 'the file'), allowEnvTags);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    errors.push(...err.problems);
    return { value: undefined, src: null };
  }
  const raw: unknown = src.doc.toJS();
  if (raw !== null && raw !== undefined && (typeof raw !== 'object' || Array.isArray(raw))) {
    errors.push(problemAt(src, [], 'the file must be a mapping (key: value) at the top level'));
    return { value: undefined, src };
  }
  const problems: FileProblems = { errors: [], reported: new Set() };
  const resolved = resolveValues(src, schema, raw ?? {}, [], env, envRefs, problems);
  const value = validate(schema, src, resolved, problems);
  errors.push(...problems.errors);
  return { value, src };
}

/** The image definitions airlock looks for in `container/`, in this order (Podman's name, then Docker's). */
export const CONTAINER_FILES = ['Containerfile', 'Dockerfile'] as const;

/**
 * `--dockerfile`, else `container/Containerfile` or `container/Dockerfile`. A `container/` directory with neither (or
 * both) is an error: falling back to the host-toolchain image would run the command somewhere else than the policy
 * author meant.
 */
async function findContainerFile(
  location: PolicyLocation,
  configDir: string | null,
  abs: (p: string) => string,
  errors: string[],
): Promise<string | undefined> {
  if (location.dockerfile !== undefined) {
    const p = abs(location.dockerfile);
    if ((await exists(p)) !== 'file') errors.push(`${p}: --dockerfile names a file that does not exist`);
    return p;
  }
  if (configDir === null) return undefined;
  const dir = path.join(configDir, 'container');
  const kind = await exists(dir);
  if (kind === null) return undefined;
  if (kind !== 'dir') {
    errors.push(`${dir}: container must be a directory holding a Containerfile or Dockerfile`);
    return undefined;
  }
  const present: string[] = [];
  for (const name of CONTAINER_FILES) {
    if ((await exists(path.join(dir, name))) === 'file') present.push(path.join(dir, name));
  }
  if (present.length === 1) return present[0];
  errors.push(
    present.length === 0
      ? `${dir}: the container directory has no Containerfile or Dockerfile (add one, or remove the directory to use ` +
          `the default image)`
      : `${dir}: the container directory has both a Containerfile and a Dockerfile; keep one`,
  );
  return undefined;
}

export function allowlistDigest(allowlist: Allowlist): string {
  return createHash('sha256').update(JSON.stringify(allowlist)).digest('hex');
}

export async function loadPolicy(location: PolicyLocation, env: NodeJS.ProcessEnv): Promise<LoadedPolicy> {
  const cwd = path.resolve(location.cwd);
  const abs = (p: string) => path.resolve(cwd, p);

  let configDir: string | null = null;
  let layout: LoadedPolicy['layout'] = 'none';
  if (location.configDir !== undefined) {
    configDir = abs(location.configDir);
    if ((await exists(configDir)) !== 'dir') throw new ConfigError(`${configDir}: --config-dir is not a directory`);
    layout = path.basename(configDir) === '.airut' ? 'airut' : 'airlock';
  } else if ((await exists(path.join(cwd, '.airlock'))) === 'dir') {
    configDir = path.join(cwd, '.airlock');
    layout = 'airlock';
  } else if ((await exists(path.join(cwd, '.airut'))) === 'dir') {
    configDir = path.join(cwd, '.airut');
    layout = 'airut';
  }

  // Problems are collected, not thrown one by one: a single run reports every error in every file.
  const errors: string[] = [];
  const warnings: string[] = [];
  const pick = async (explicit: string | undefined, relative: string, flag: string): Promise<string | undefined> => {
    if (explicit !== undefined) {
      const p = abs(explicit);
      if ((await exists(p)) !== 'file') errors.push(`${p}: ${flag} names a file that does not exist`);
      return p;
    }
    if (configDir === null) return undefined;
    const p = path.join(configDir, relative);
    return (await exists(p)) === 'file' ? p : undefined;
  };

  const sandboxFile = location.allowlistOnly ? undefined : await pick(location.config, 'sandbox.yaml', '--config');
  const allowlistFile = await pick(location.allowlist, 'network-allowlist.yaml', '--allowlist');
  const dockerfile = location.allowlistOnly ? undefined : await findContainerFile(location, configDir, abs, errors);

  const envRefs = new Map<string, string>();
  const sandboxRead =
    sandboxFile && !errors.some((e) => e.startsWith(sandboxFile + ':'))
      ? await loadYamlFile(sandboxFile, SandboxConfigSchema, true, env, envRefs, errors)
      : null;
  const allowlistRead =
    allowlistFile && !errors.some((e) => e.startsWith(allowlistFile + ':'))
      ? await loadYamlFile(allowlistFile, AllowlistSchema, false, env, new Map(), errors)
      : null;
  const sandbox: SandboxConfig = sandboxRead?.value ?? SandboxConfigSchema.parse({});
  const allowlist: Allowlist = allowlistRead?.value ?? EMPTY_ALLOWLIST;
  if (allowlistRead?.value && allowlistRead.src) {
    // Airut's own files are read unchanged: what Airut gives a meaning stays valid there (a warning, not an error).
    const airut = path.basename(path.dirname(allowlistRead.src.file)) === '.airut';
    for (const finding of lintAllowlist(allowlistRead.value, { airut })) {
      const line = problemAt(allowlistRead.src, finding.path, finding.message);
      (finding.severity === 'error' ? errors : warnings).push(line);
    }
  }

  let build: LoadedPolicy['build'] = null;
  if (dockerfile) {
    const contextDir = location.contextDir !== undefined ? abs(location.contextDir) : path.dirname(dockerfile);
    if (location.contextDir !== undefined && (await exists(contextDir)) !== 'dir') {
      errors.push(`${contextDir}: --context-dir is not a directory`);
    }
    build = { dockerfile, contextDir };
  } else if (location.contextDir !== undefined && !location.allowlistOnly) {
    errors.push('--context-dir was given but there is no Dockerfile (use --dockerfile or container/Dockerfile)');
  }

  let upstreamCaFile: string | undefined;
  if (sandbox.upstream_ca_file !== undefined) {
    upstreamCaFile = path.resolve(configDir ?? cwd, sandbox.upstream_ca_file);
    try {
      const pem = await readText(upstreamCaFile, 'upstream_ca_file');
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
        const at = sandboxRead?.src ? problemAt(sandboxRead.src, ['upstream_ca_file'], '') : `${sandboxFile}: `;
        errors.push(`${at.replace(/: $/, '')}: ${upstreamCaFile} holds no PEM certificate`);
      }
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      errors.push(...err.problems);
    }
  }
  if (errors.length > 0) throw new ConfigError(errors, warnings);

  const files: LoadedPolicy['files'] = {};
  if (sandboxFile) files.sandbox = sandboxFile;
  if (allowlistFile) files.allowlist = allowlistFile;
  const policy: LoadedPolicy = {
    configDir,
    layout,
    sandbox,
    envRefs,
    allowlist,
    allowlistSha256: allowlistDigest(allowlist),
    files,
    build,
    warnings,
  };
  if (upstreamCaFile !== undefined) policy.upstreamCaFile = upstreamCaFile;
  return policy;
}
