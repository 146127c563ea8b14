import { splitWords } from './sandbox-command.js';

/** The action's inputs (action.yml), validated once. */
export interface ActionInputs {
  command: string;
  /** Empty: the PR head SHA from the event. */
  prSha: string;
  merge: boolean;
  sandboxArgs: string[];
  cache: boolean;
  cacheVersion: string;
  /** Hours; images older than this are rebuilt even on a cache hit. */
  cacheMaxAge: number;
  engine: 'podman' | 'docker' | null;
  /** For the host-side fetches only; never reaches the sandbox. Empty: anonymous. */
  token: string;
}

export class InputError extends Error {}

function bool(name: string, raw: string, fallback: boolean): boolean {
  const v = raw.trim();
  if (v === '') return fallback;
  if (/^(true|True|TRUE)$/.test(v)) return true;
  if (/^(false|False|FALSE)$/.test(v)) return false;
  throw new InputError(`input '${name}' must be true or false, not '${v}'`);
}

export function readInputs(get: (name: string) => string): ActionInputs {
  const command = get('command');
  if (command.trim() === '') throw new InputError(`input 'command' is required: the command to run in the sandbox`);
  const sandboxArgs = splitWords(get('sandbox-args'));
  if (sandboxArgs.includes('--')) {
    throw new InputError(`input 'sandbox-args' takes airlock run options only; the command goes in 'command'`);
  }
  const ageText = get('cache-max-age').trim() || '168';
  if (!/^\d+$/.test(ageText)) throw new InputError(`input 'cache-max-age' is whole hours, not '${ageText}'`);
  const engineText = get('engine').trim();
  if (engineText !== '' && engineText !== 'podman' && engineText !== 'docker') {
    throw new InputError(`input 'engine' must be podman or docker (or empty to pick one), not '${engineText}'`);
  }
  const cacheVersion = get('cache-version').trim();
  if (!/^[\w.-]*$/.test(cacheVersion)) {
    throw new InputError(`input 'cache-version' may hold letters, digits, '.', '_' and '-' only`);
  }
  return {
    command,
    prSha: get('pr-sha').trim(),
    merge: bool('merge', get('merge'), true),
    sandboxArgs,
    cache: bool('cache', get('cache'), true),
    cacheVersion,
    cacheMaxAge: Number(ageText),
    engine: engineText === '' ? null : engineText,
    token: get('token').trim(),
  };
}
