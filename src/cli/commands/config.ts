import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { loadPolicy } from '../config/load.js';
import type { LoadedPolicy } from '../config/types.js';
import { EXIT, UsageError } from '../errors.js';
import type { Command } from './types.js';

const USAGE =
  'usage: airlock config check [--config-dir DIR] [--config FILE] [--allowlist FILE] [--dockerfile FILE] [--context-dir DIR] [--json]';

/** A secret as `config check` shows it: where it comes from and its shape, never its value. */
function redact(policy: LoadedPolicy, keyPath: string, value: string | null | undefined): string | null {
  if (value === null || value === undefined) return null;
  const from = policy.envRefs.get(keyPath);
  const source = from ? `from $${from}` : 'literal in the file';
  if (value === '') return `<empty, ${source}: the variable is not set in the sandbox>`;
  return `<redacted: ${value.length} chars, ${source}; the sandbox gets a surrogate of the same shape>`;
}

export function resolvedView(policy: LoadedPolicy): Record<string, unknown> {
  const s = policy.sandbox;
  const masked = Object.fromEntries(
    Object.entries(s.masked_secrets).map(([name, m]) => [
      name,
      { ...m, value: redact(policy, `masked_secrets.${name}.value`, m.value) },
    ]),
  );
  const signing = Object.fromEntries(
    Object.entries(s.signing_credentials).map(([name, c]) => [
      name,
      {
        ...c,
        access_key_id: redact(policy, `signing_credentials.${name}.access_key_id`, c.access_key_id),
        secret_access_key: redact(policy, `signing_credentials.${name}.secret_access_key`, c.secret_access_key),
        session_token: redact(policy, `signing_credentials.${name}.session_token`, c.session_token),
      },
    ]),
  );
  // `env` values can come from `!env` too and may be sensitive: show where they come from, not what they are.
  const env = Object.fromEntries(
    Object.entries(s.env).map(([k, v]) => {
      const from = policy.envRefs.get(`env.${k}`);
      return [k, from ? `<from $${from}, ${v.length} chars>` : v];
    }),
  );
  return {
    sources: {
      config_dir: policy.configDir,
      layout: policy.layout,
      sandbox: policy.files.sandbox ?? null,
      allowlist: policy.files.allowlist ?? null,
      dockerfile: policy.build?.dockerfile ?? null,
      context_dir: policy.build?.contextDir ?? null,
      allowlist_sha256: policy.allowlistSha256,
    },
    sandbox: { ...s, env, masked_secrets: masked, signing_credentials: signing },
    allowlist: policy.allowlist,
  };
}

export const run: Command = async (argv, ctx) => {
  const [sub, ...rest] = argv;
  if (sub !== 'check') throw new UsageError(sub === undefined ? USAGE : `unknown config command '${sub}'\n${USAGE}`);
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    strict: true,
    options: {
      'config-dir': { type: 'string' },
      config: { type: 'string' },
      allowlist: { type: 'string' },
      dockerfile: { type: 'string' },
      'context-dir': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  if (positionals.length) throw new UsageError(USAGE);
  const location: Parameters<typeof loadPolicy>[0] = { cwd: ctx.cwd };
  if (values['config-dir'] !== undefined) location.configDir = values['config-dir'];
  if (values.config !== undefined) location.config = values.config;
  if (values.allowlist !== undefined) location.allowlist = values.allowlist;
  if (values.dockerfile !== undefined) location.dockerfile = values.dockerfile;
  if (values['context-dir'] !== undefined) location.contextDir = values['context-dir'];
  const policy = await loadPolicy(location, ctx.env);
  const view = resolvedView(policy);
  ctx.stdout.write(values.json ? JSON.stringify(view, null, 2) + '\n' : stringify(view, { lineWidth: 0 }));
  if (!policy.sandbox.network_sandbox) {
    ctx.stderr.write('airlock: warning: network_sandbox is false: the command will have unrestricted network access\n');
  }
  return EXIT.ok;
};
