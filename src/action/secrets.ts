import type { LoadedPolicy } from '../cli/config/types.js';

/**
 * Every value in the policy that must never appear in the job log: masked secrets and signing credentials (the proxy
 * uses them on the wire), and anything read from the host environment with `!env` (it may be a secret the author
 * chose to pass in plain). The runner masks registered values in everything printed after registration.
 */
export function secretValues(policy: LoadedPolicy, hostEnv: NodeJS.ProcessEnv): string[] {
  const values = new Set<string>();
  const add = (v: string | null | undefined): void => {
    if (v !== undefined && v !== null && v.trim() !== '') values.add(v);
  };
  for (const secret of Object.values(policy.sandbox.masked_secrets)) add(secret.value);
  for (const cred of Object.values(policy.sandbox.signing_credentials)) {
    add(cred.access_key_id);
    add(cred.secret_access_key);
    add(cred.session_token);
  }
  for (const [keyPath, hostVariable] of policy.envRefs) {
    add(hostEnv[hostVariable]);
    add(valueAt(policy.sandbox, keyPath.split('.')));
  }
  return [...values];
}

function valueAt(root: unknown, path: string[]): string | undefined {
  let node: unknown = root;
  for (const key of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return typeof node === 'string' ? node : undefined;
}
