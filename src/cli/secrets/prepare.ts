import type { CredentialConfig, MaskedCredential, SigningCredential } from '../../protocol/proxy-wire.js';
import {
  mintAwsAccessKeyId,
  mintAwsSecretAccessKey,
  mintAwsSessionToken,
  mintSurrogate,
} from '../../protocol/surrogate.js';
import { ConfigError } from '../errors.js';
import type { LoadedPolicy } from '../config/types.js';

/**
 * Host-side preparation of a run's credentials (airut-behaviour.md §1b): real values go to the proxy only, the
 * sandbox gets fresh surrogates. This is one of the two places real secret values exist (the other is
 * proxy/credentials); nothing here logs or throws a value.
 */

export interface PreparedCredentials {
  /** Only the credential variables (surrogates); the caller merges them over `env` and `pass_env`. */
  containerEnv: Record<string, string>;
  /** For the proxy's stdin config; holds the real values. */
  proxyCredentials: CredentialConfig;
  /** Every real value, so the Action can mask them in its own logs. */
  secretValues: string[];
  warnings: string[];
}

const DEFAULT_AWS_VARIABLES = {
  access_key_id: 'AWS_ACCESS_KEY_ID',
  secret_access_key: 'AWS_SECRET_ACCESS_KEY',
  session_token: 'AWS_SESSION_TOKEN',
} as const;

/** Bytes no HTTP header can carry: a real value holding them would inject or cut header lines at the proxy. */
const HEADER_BREAKING = /[\r\n\0]/;

/** How often a surrogate is redrawn before a too-short real value is reported instead of looping on. */
const MINT_ATTEMPTS = 1000;

/**
 * A surrogate must not be mistaken for another: none may contain another surrogate (the proxy replaces
 * substrings) or any real value (the sandbox would then hold it).
 */
function conflicts(candidate: string, minted: readonly string[], reals: readonly string[]): boolean {
  if (minted.some((other) => other.includes(candidate) || candidate.includes(other))) return true;
  return reals.some((real) => candidate.includes(real));
}

function mintUnique(key: string, mint: () => string, minted: string[], reals: readonly string[]): string {
  for (let attempt = 0; attempt < MINT_ATTEMPTS; attempt++) {
    const surrogate = mint();
    if (!conflicts(surrogate, minted, reals)) {
      minted.push(surrogate);
      return surrogate;
    }
  }
  throw new ConfigError(
    `${key}: could not mint a surrogate that contains no real secret value; a configured secret is too short ` +
      `to hide (use secrets of at least 8 characters)`,
  );
}

function checkHeaderSafe(key: string, value: string): void {
  if (HEADER_BREAKING.test(value)) {
    throw new ConfigError(
      `${key}: the value contains a line break or NUL byte, which no HTTP header can carry ` +
        `(strip the trailing newline from the variable or file it comes from)`,
    );
  }
}

export function prepareCredentials(policy: LoadedPolicy, _env: NodeJS.ProcessEnv): PreparedCredentials {
  const sandbox = policy.sandbox;
  const containerEnv: Record<string, string> = {};
  const setBy = new Map<string, string>();
  const masked: MaskedCredential[] = [];
  const signing: SigningCredential[] = [];
  const warnings: string[] = [];
  const minted: string[] = [];

  const setVariable = (variable: string, value: string, key: string): void => {
    const earlier = setBy.get(variable);
    if (earlier !== undefined) {
      throw new ConfigError(
        `${key}: the container variable ${variable} is already set by ${earlier}; give one of them another name`,
      );
    }
    setBy.set(variable, key);
    containerEnv[variable] = value;
  };

  const maskedEntries = Object.entries(sandbox.masked_secrets).filter(([, s]) => s.value !== '');
  const signingEntries = Object.entries(sandbox.signing_credentials);
  const reals: string[] = [];
  for (const [name, secret] of maskedEntries) {
    checkHeaderSafe(`masked_secrets.${name}.value`, secret.value);
    reals.push(secret.value);
  }
  for (const [name, cred] of signingEntries) {
    for (const field of ['access_key_id', 'secret_access_key', 'session_token'] as const) {
      const value = cred[field];
      if (value === undefined || value === null || value === '') continue;
      checkHeaderSafe(`signing_credentials.${name}.${field}`, value);
      reals.push(value);
    }
  }

  for (const [name, secret] of maskedEntries) {
    const key = `masked_secrets.${name}.value`;
    const surrogate = mintUnique(key, () => mintSurrogate(secret.value), minted, reals);
    setVariable(name, surrogate, key);
    masked.push({
      name,
      surrogate,
      value: secret.value,
      scopes: [...secret.scopes],
      headers: [...secret.headers],
      allowForeignCredentials: secret.allow_foreign_credentials,
    });
  }

  for (const [name, cred] of signingEntries) {
    const path = `signing_credentials.${name}`;
    const variable = (field: keyof typeof DEFAULT_AWS_VARIABLES): string =>
      policy.envRefs.get(`${path}.${field}`) ?? DEFAULT_AWS_VARIABLES[field];
    const sessionToken = cred.session_token ?? '';
    const keyId = mintUnique(`${path}.access_key_id`, () => mintAwsAccessKeyId(cred.access_key_id), minted, reals);
    const secretKey = mintUnique(
      `${path}.secret_access_key`,
      () => mintAwsSecretAccessKey(cred.secret_access_key),
      minted,
      reals,
    );
    setVariable(variable('access_key_id'), keyId, `${path}.access_key_id`);
    setVariable(variable('secret_access_key'), secretKey, `${path}.secret_access_key`);
    const entry: SigningCredential = {
      name,
      type: 'aws-sigv4',
      surrogateAccessKeyId: keyId,
      // The sandbox holds this surrogate anyway; the proxy uses it to learn which canonicalisation the client used.
      surrogateSecretAccessKey: secretKey,
      accessKeyId: cred.access_key_id,
      secretAccessKey: cred.secret_access_key,
      scopes: [...cred.scopes],
    };
    if (sessionToken !== '') {
      const token = mintUnique(`${path}.session_token`, () => mintAwsSessionToken(sessionToken), minted, reals);
      setVariable(variable('session_token'), token, `${path}.session_token`);
      entry.surrogateSessionToken = token;
      entry.sessionToken = sessionToken;
    }
    signing.push(entry);
  }

  if (!sandbox.network_sandbox && (masked.length > 0 || signing.length > 0)) {
    const names = [
      ...masked.map((m) => `masked_secrets.${m.name}`),
      ...signing.map((s) => `signing_credentials.${s.name}`),
    ];
    warnings.push(
      `network_sandbox is false: ${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} injected as ` +
        `surrogates, but no proxy swaps them for the real values, so they will not work`,
    );
  }

  return { containerEnv, proxyCredentials: { masked, signing }, secretValues: [...new Set(reals)], warnings };
}
