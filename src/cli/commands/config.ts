import { stringify } from 'yaml';
import {
  AWS_ACCESS_KEY_ID_LENGTH,
  AWS_SECRET_ACCESS_KEY_LENGTH,
  AWS_SESSION_TOKEN_SURROGATE_LENGTH,
  surrogateCharset,
  tokenPrefix,
} from '../../protocol/surrogate.js';
import { loadPolicy } from '../config/load.js';
import type { LoadedPolicy } from '../config/types.js';
import { EXIT, UsageError } from '../errors.js';
import { JSON_OPTION, POLICY_OPTIONS, policyLocation } from './options.js';
import { parseFlags } from './parse-flags.js';
import type { Command } from './types.js';

const USAGE =
  'usage: airlock config check [--config-dir DIR] [--config FILE] [--allowlist FILE] [--dockerfile FILE] [--context-dir DIR] [--json]';

/** The shape of the surrogate the sandbox will see: known prefix, length and alphabet — never a real character. */
export function surrogateFormat(value: string, kind: 'token' | 'aws-key-id' | 'aws-secret' | 'aws-session'): string {
  switch (kind) {
    case 'aws-key-id':
      return `${value.slice(0, 4)} + ${AWS_ACCESS_KEY_ID_LENGTH - 4} chars [A-Z0-9]`;
    case 'aws-secret':
      return `${AWS_SECRET_ACCESS_KEY_LENGTH} chars [A-Za-z0-9/+]`;
    case 'aws-session':
      return `${AWS_SESSION_TOKEN_SURROGATE_LENGTH} chars [A-Za-z0-9]`;
    case 'token': {
      const prefix = tokenPrefix(value);
      const rest = [...value.slice(prefix.length)];
      const alphabet = describeCharset(surrogateCharset(rest.join('')));
      return `${prefix ? `${prefix} + ` : ''}${rest.length} chars ${alphabet}`;
    }
  }
}

function describeCharset(charset: string): string {
  const parts: string[] = [];
  if (/[A-Z]/.test(charset)) parts.push('A-Z');
  if (/[a-z]/.test(charset)) parts.push('a-z');
  if (/[0-9]/.test(charset)) parts.push('0-9');
  const other = charset.replace(/[A-Za-z0-9]/g, '');
  return `[${parts.join('')}${other}]`;
}

/** A secret as `config check` shows it: where it comes from and its surrogate's shape, never its value. */
function redact(
  policy: LoadedPolicy,
  keyPath: string,
  value: string | null | undefined,
  kind: Parameters<typeof surrogateFormat>[1],
): string | null {
  if (value === null || value === undefined) return null;
  const from = policy.envRefs.get(keyPath);
  const source = from ? `from $${from}` : 'literal in the file';
  if (value === '') return `<empty, ${source}: the variable is not set in the sandbox>`;
  return `<redacted: ${value.length} chars, ${source}; surrogate: ${surrogateFormat(value, kind)}>`;
}

export function resolvedView(policy: LoadedPolicy): Record<string, unknown> {
  const s = policy.sandbox;
  const masked = Object.fromEntries(
    Object.entries(s.masked_secrets).map(([name, m]) => [
      name,
      { ...m, value: redact(policy, `masked_secrets.${name}.value`, m.value, 'token') },
    ]),
  );
  const signing = Object.fromEntries(
    Object.entries(s.signing_credentials).map(([name, c]) => [
      name,
      {
        ...c,
        access_key_id: redact(policy, `signing_credentials.${name}.access_key_id`, c.access_key_id, 'aws-key-id'),
        secret_access_key: redact(
          policy,
          `signing_credentials.${name}.secret_access_key`,
          c.secret_access_key,
          'aws-secret',
        ),
        session_token: redact(policy, `signing_credentials.${name}.session_token`, c.session_token, 'aws-session'),
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
  const { values, positionals } = parseFlags(
    { args: rest, allowPositionals: true, strict: true, options: { ...POLICY_OPTIONS, ...JSON_OPTION } },
    'config check',
  );
  if (positionals.length) throw new UsageError(USAGE);
  const policy = await loadPolicy(policyLocation(values, ctx.cwd), ctx.env);
  const view = resolvedView(policy);
  ctx.stdout.write(values.json ? JSON.stringify(view, null, 2) + '\n' : stringify(view, { lineWidth: 0 }));
  for (const warning of policy.warnings) ctx.stderr.write(`airlock: warning: ${warning}\n`);
  if (!policy.sandbox.network_sandbox) {
    ctx.stderr.write('airlock: warning: network_sandbox is false: the command will have unrestricted network access\n');
  }
  return EXIT.ok;
};
