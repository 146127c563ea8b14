import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { z } from 'zod';
import { AllowlistSchema, EMPTY_ALLOWLIST, type Allowlist } from '../../protocol/allowlist.js';
import { SandboxConfigSchema, type SandboxConfig } from '../../protocol/sandbox-config.js';
import { ConfigError } from '../errors.js';
import type { LoadedPolicy, PolicyLocation } from './types.js';
import {
  configErrorAt,
  dottedPath,
  EnvRef,
  parseYamlSource,
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

/** Key paths whose values are strings by nature: a YAML 1.1 `010` or `yes` there means the text as written. */
function isStringPath(p: KeyPath): boolean {
  const [a, , c] = p;
  switch (a) {
    case 'env':
    case 'pass_env':
    case 'upstream_hosts':
    case 'upstream_dns':
    case 'image':
    case 'upstream_ca_file':
    case 'domains':
      return p.length >= 1;
    case 'masked_secrets':
      return c === 'value' || c === 'scopes' || c === 'headers';
    case 'signing_credentials':
      return c === 'access_key_id' || c === 'secret_access_key' || c === 'session_token' || c === 'scopes';
    case 'resource_limits':
      return p[1] === 'memory' || p[1] === 'disk';
    case 'url_prefixes':
      return c === 'host' || c === 'path' || c === 'methods';
    default:
      return false;
  }
}

function resolveValues(
  src: YamlSource,
  value: unknown,
  at: KeyPath,
  env: NodeJS.ProcessEnv,
  envRefs: Map<string, string>,
): unknown {
  if (value instanceof EnvRef) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(value.name)) {
      throw configErrorAt(src, at, `!env needs a variable name, e.g. \`!env GH_TOKEN\` (got "${value.name}")`);
    }
    const resolved = env[value.name];
    if (resolved === undefined) {
      throw configErrorAt(src, at, `environment variable '${value.name}' is not set (set it, or remove the entry)`);
    }
    envRefs.set(dottedPath(at), value.name);
    return resolved;
  }
  if (Array.isArray(value)) return value.map((v, i) => resolveValues(src, v, [...at, i], env, envRefs));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = resolveValues(src, v, [...at, k], env, envRefs);
    return out;
  }
  if ((typeof value === 'number' || typeof value === 'boolean') && isStringPath(at)) {
    return scalarSource(src, at) ?? String(value);
  }
  if (typeof value === 'string' && at[0] === 'resource_limits' && !isStringPath(at) && /^\s*[\d.]+\s*$/.test(value)) {
    return Number(value);
  }
  const booleanPath =
    (at.length === 1 && at[0] === 'network_sandbox') ||
    (at.length === 3 && at[0] === 'masked_secrets' && at[2] === 'allow_foreign_credentials') ||
    (at.length === 2 && at[0] === 'resource_limits' && at[1] === 'require');
  if (typeof value === 'string' && booleanPath) {
    const v = value.trim().toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(v)) return true;
    if (['false', '0', 'no', 'off'].includes(v)) return false;
  }
  return value;
}

/** Walk a zod schema along a key path to list the keys an object there accepts (for "did you mean"). */
function keysAt(schema: z.ZodType, p: KeyPath): string[] {
  let s: unknown = schema;
  const unwrap = (x: unknown): unknown => {
    for (let i = 0; i < 10; i++) {
      const def = (x as { _zod?: { def?: Record<string, unknown> } })._zod?.def;
      if (!def) return x;
      if (def.type === 'optional' || def.type === 'nullable' || def.type === 'default' || def.type === 'prefault')
        x = def.innerType;
      else if (def.type === 'pipe') x = def.in;
      else return x;
    }
    return x;
  };
  for (const seg of p) {
    s = unwrap(s);
    const def = (s as { _zod: { def: Record<string, unknown> } })._zod.def;
    if (def.type === 'object') s = (def.shape as Record<string, unknown>)[String(seg)];
    else if (def.type === 'record') s = def.valueType;
    else if (def.type === 'array') s = def.element;
    else return [];
    if (s === undefined) return [];
  }
  s = unwrap(s);
  const def = (s as { _zod: { def: Record<string, unknown> } })._zod.def;
  return def.type === 'object' ? Object.keys(def.shape as object) : [];
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length]!;
}

function validate<S extends z.ZodType>(schema: S, src: YamlSource, value: unknown): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  // A misspelt key also leaves its real key "missing"; the misspelling is what the user needs to hear about.
  const issue = result.error.issues.find((i) => i.code === 'unrecognized_keys') ?? result.error.issues[0]!;
  const at = issue.path.filter((x): x is string | number => typeof x !== 'symbol');
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0]!;
    const valid = keysAt(schema, at);
    const near = valid.find((k) => editDistance(k, key) <= 2);
    const hint = near ? `did you mean '${near}'?` : valid.length ? `valid keys: ${valid.join(', ')}` : '';
    throw configErrorAt(src, [...at, key], `unknown key '${key}'${hint ? '; ' + hint : ''}`, true);
  }
  if (issue.code === 'invalid_type') {
    const got =
      value === null
        ? null
        : at.reduce<unknown>((v, k) => (v as Record<string | number, unknown> | undefined)?.[k], value);
    if (got === null || got === undefined) {
      throw configErrorAt(src, at, `value is missing (expected ${issue.expected})`);
    }
    const kind = Array.isArray(got) ? 'a list' : typeof got === 'object' ? 'a mapping' : `a ${typeof got}`;
    throw configErrorAt(src, at, `expected ${describeExpected(issue.expected)}, found ${kind}`);
  }
  throw configErrorAt(src, at, issue.message);
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

async function loadYamlFile<S extends z.ZodType>(
  file: string,
  schema: S,
  allowEnvTags: boolean,
  env: NodeJS.ProcessEnv,
  envRefs: Map<string, string>,
): Promise<z.output<S>> {
  const text = await readText(file, 'the file');
  const src = parseYamlSource(file, text, allowEnvTags);
  const raw: unknown = src.doc.toJS();
  if (raw !== null && raw !== undefined && (typeof raw !== 'object' || Array.isArray(raw))) {
    throw configErrorAt(src, [], 'the file must be a mapping (key: value) at the top level');
  }
  const resolved = resolveValues(src, raw ?? {}, [], env, envRefs);
  return validate(schema, src, resolved);
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

  const pick = async (explicit: string | undefined, relative: string, flag: string): Promise<string | undefined> => {
    if (explicit !== undefined) {
      const p = abs(explicit);
      if ((await exists(p)) !== 'file') throw new ConfigError(`${p}: ${flag} names a file that does not exist`);
      return p;
    }
    if (configDir === null) return undefined;
    const p = path.join(configDir, relative);
    return (await exists(p)) === 'file' ? p : undefined;
  };

  const sandboxFile = location.allowlistOnly ? undefined : await pick(location.config, 'sandbox.yaml', '--config');
  const allowlistFile = await pick(location.allowlist, 'network-allowlist.yaml', '--allowlist');
  const dockerfile = location.allowlistOnly
    ? undefined
    : await pick(location.dockerfile, path.join('container', 'Dockerfile'), '--dockerfile');

  const envRefs = new Map<string, string>();
  const sandbox: SandboxConfig = sandboxFile
    ? await loadYamlFile(sandboxFile, SandboxConfigSchema, true, env, envRefs)
    : SandboxConfigSchema.parse({});
  const allowlist: Allowlist = allowlistFile
    ? await loadYamlFile(allowlistFile, AllowlistSchema, false, env, new Map())
    : EMPTY_ALLOWLIST;

  let build: LoadedPolicy['build'] = null;
  if (dockerfile) {
    const contextDir = location.contextDir !== undefined ? abs(location.contextDir) : path.dirname(dockerfile);
    if (location.contextDir !== undefined && (await exists(contextDir)) !== 'dir') {
      throw new ConfigError(`${contextDir}: --context-dir is not a directory`);
    }
    build = { dockerfile, contextDir };
  } else if (location.contextDir !== undefined) {
    throw new ConfigError(
      '--context-dir was given but there is no Dockerfile (use --dockerfile or container/Dockerfile)',
    );
  }

  let upstreamCaFile: string | undefined;
  if (sandbox.upstream_ca_file !== undefined) {
    upstreamCaFile = path.resolve(configDir ?? cwd, sandbox.upstream_ca_file);
    const pem = await readText(upstreamCaFile, 'upstream_ca_file');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
      throw new ConfigError(
        `${sandboxFile ?? 'sandbox.yaml'}: upstream_ca_file: ${upstreamCaFile} holds no PEM certificate`,
      );
    }
  }

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
  };
  if (upstreamCaFile !== undefined) policy.upstreamCaFile = upstreamCaFile;
  return policy;
}
