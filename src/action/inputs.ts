import { AirlockError, EXIT } from '../cli/errors.js';
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
  engine: 'podman' | 'docker' | 'kubernetes' | null;
  /** For the host-side fetches only; never reaches the sandbox. Empty: anonymous. */
  token: string;
  /** Inputs that were given but mean nothing here (Airut's `airut_version`), to be reported. */
  ignored: string[];
  /** Audit mode (`airlock run --audit`): policy refusals are let through, logged, and turned into a suggestion. */
  audit: boolean;
}

/**
 * airutorg/sandbox-action's input names, accepted as aliases so its `with:` blocks work unchanged (it spells
 * `cache-version` and `cache-max-age` with hyphens like ours; the underscore forms are accepted too).
 */
export const INPUT_ALIASES = {
  'pr-sha': 'pr_sha',
  'sandbox-args': 'sandbox_args',
  'cache-version': 'cache_version',
  'cache-max-age': 'cache_max_age',
} as const;

/** Airut's inputs that have no meaning for airlock: accepted, reported as ignored. */
export const IGNORED_INPUTS = {
  airut_version: 'airlock runs its own bundled code; there is no Airut version to install',
} as const;

/** An input of the action (action.yml `with:`) has a value it cannot use. Exit 125, as documented. */
export class InputError extends AirlockError {
  constructor(message: string) {
    super(message, EXIT.airlock, 'input');
  }
}

function bool(name: string, raw: string, fallback: boolean): boolean {
  const v = raw.trim();
  if (v === '') return fallback;
  if (/^(true|True|TRUE)$/.test(v)) return true;
  if (/^(false|False|FALSE)$/.test(v)) return false;
  throw new InputError(`input '${name}' must be true or false, not '${v}'`);
}

/** One input under its airlock name or its sandbox-action alias; both given must agree. */
function either(get: (name: string) => string, name: keyof typeof INPUT_ALIASES): string {
  const alias = INPUT_ALIASES[name];
  const ours = get(name).trim();
  const theirs = get(alias).trim();
  if (ours !== '' && theirs !== '' && ours !== theirs) {
    throw new InputError(`inputs '${name}' and '${alias}' are the same input and disagree; give only one of them`);
  }
  return ours || theirs;
}

export function readInputs(get: (name: string) => string): ActionInputs {
  const command = get('command');
  if (command.trim() === '') throw new InputError(`input 'command' is required: the command to run in the sandbox`);
  const sandboxArgs = splitWords(either(get, 'sandbox-args'));
  if (sandboxArgs.includes('--')) {
    throw new InputError(`input 'sandbox-args' takes airlock run options only; the command goes in 'command'`);
  }
  const ageText = either(get, 'cache-max-age') || '168';
  if (!/^\d+$/.test(ageText)) throw new InputError(`input 'cache-max-age' is whole hours, not '${ageText}'`);
  const engineText = get('engine').trim();
  if (engineText !== '' && engineText !== 'podman' && engineText !== 'docker' && engineText !== 'kubernetes') {
    throw new InputError(
      `input 'engine' must be podman, docker or kubernetes (or empty to pick one), not '${engineText}'`,
    );
  }
  const cacheVersion = either(get, 'cache-version');
  if (!/^[\w.-]*$/.test(cacheVersion)) {
    throw new InputError(`input 'cache-version' may hold letters, digits, '.', '_' and '-' only`);
  }
  return {
    command,
    prSha: either(get, 'pr-sha'),
    merge: bool('merge', get('merge'), true),
    sandboxArgs,
    cache: bool('cache', get('cache'), true),
    cacheVersion,
    cacheMaxAge: Number(ageText),
    engine: engineText === '' ? null : engineText,
    token: get('token').trim(),
    ignored: Object.entries(IGNORED_INPUTS)
      .filter(([name]) => get(name).trim() !== '')
      .map(([name, why]) => `input '${name}' is ignored: ${why}`),
    audit: bool('audit', get('audit'), false),
  };
}
