import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { getExecOutput } from '@actions/exec';
import { AirlockError, EXIT } from '../cli/errors.js';
import { COMMIT_SHA } from './target.js';

/**
 * Host-side git for the action: check out the trusted base branch and fetch the PR commit, before any untrusted code
 * runs. The token travels only in the environment of the git processes that talk to the server (GIT_CONFIG_* —
 * not argv, which `ps` shows, and never .git/config, which the sandbox can read: Airut's checkout leaves it there).
 */

export interface Origin {
  /** `https://github.com/owner/repo` on GitHub; any git URL (file://) in tests. */
  url: string;
  /** Sent as an HTTP basic-auth header to `url`'s server; null for none. */
  token: string | null;
}

/** git failed on the host (checkout, fetch, merge): airlock's own failure, before any PR code ran. */
export class GitError extends AirlockError {
  constructor(message: string) {
    super(message, EXIT.airlock, 'git');
  }
}

/** The header value actions/checkout uses, so GitHub accepts it the same way. Register it as a secret too. */
export function authHeader(token: string): string {
  return `AUTHORIZATION: basic ${Buffer.from(`x-access-token:${token}`, 'utf8').toString('base64')}`;
}

/** Environment for one git invocation: config from GIT_CONFIG_* only for it, no prompts, no system askpass. */
export function gitEnv(origin: Origin | null, base: NodeJS.ProcessEnv): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) {
    if (v !== undefined && !k.startsWith('GIT_CONFIG_')) env[k] = v;
  }
  env.GIT_TERMINAL_PROMPT = '0';
  if (origin?.token && /^https?:\/\//i.test(origin.url)) {
    const server = new URL(origin.url);
    env.GIT_CONFIG_COUNT = '1';
    env.GIT_CONFIG_KEY_0 = `http.${server.protocol}//${server.host}/.extraheader`;
    env.GIT_CONFIG_VALUE_0 = authHeader(origin.token);
  }
  return env;
}

async function git(
  workspace: string,
  args: string[],
  origin: Origin | null,
  opts: { allowFailure?: boolean; silent?: boolean } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await getExecOutput('git', ['-C', workspace, ...args], {
    env: gitEnv(origin, process.env),
    ignoreReturnCode: true,
    silent: opts.silent ?? false,
  });
  if (out.exitCode !== 0 && !opts.allowFailure) {
    throw new GitError(
      `git ${args.join(' ')} failed (exit ${out.exitCode}): ${out.stderr.trim().split('\n').pop() ?? ''}`,
    );
  }
  return { code: out.exitCode, stdout: out.stdout, stderr: out.stderr };
}

/**
 * Credentials an earlier step persisted in .git/config (actions/checkout with persist-credentials: true). Read as
 * text, never through git: the repository is about to be discarded and git must not run in it.
 */
async function persistedCredentialKeys(workspace: string): Promise<string[]> {
  const config = await readFile(join(workspace, '.git', 'config'), 'utf8').catch(() => '');
  const keys: string[] = [];
  let section = '';
  for (const line of config.split('\n')) {
    const header = /^\s*\[\s*([^\s\]"]+)(?:\s+"([^"]*)")?\s*\]/.exec(line);
    if (header) section = header[2] === undefined ? header[1]! : `${header[1]!}.${header[2]}`;
    else if (/^\s*extraheader\s*=/i.test(line) && /^http\b/i.test(section)) keys.push(`${section}.extraheader`);
  }
  return [...new Set(keys)];
}

/**
 * Makes `workspace` a fresh checkout of `baseRef` from `origin` and returns the base commit. Whatever was there is
 * removed first, .git included, like actions/checkout does for a foreign directory: a workspace an earlier run left
 * (self-hosted runners keep it) may hold hooks or `core.fsmonitor` that would run PR code on the host at our first
 * git command, persisted tokens, or an untracked `.airlock/network-allowlist.yaml` standing in for the base's policy.
 */
export async function checkoutBase(
  workspace: string,
  origin: Origin,
  baseRef: string,
  kind: 'branch' | 'tag' = 'branch',
): Promise<{ baseSha: string; droppedCredentials: string[] }> {
  const droppedCredentials = await persistedCredentialKeys(workspace);
  await mkdir(workspace, { recursive: true });
  for (const entry of await readdir(workspace)) {
    // rm does not follow symlinks: a link to somewhere else on the host removes the link only.
    await rm(join(workspace, entry), { recursive: true, force: true });
  }
  await git(workspace, ['init', '--quiet'], null);
  await git(workspace, ['remote', 'add', 'origin', origin.url], null);
  // A tag (release events) is checked out detached; the merge inside the sandbox works the same on it.
  const [remote, local] =
    kind === 'branch'
      ? [`refs/heads/${baseRef}`, `refs/remotes/origin/${baseRef}`]
      : [`refs/tags/${baseRef}`, `refs/tags/${baseRef}`];
  await git(workspace, ['fetch', '--no-tags', '--no-recurse-submodules', 'origin', `+${remote}:${local}`], origin);
  const checkout = kind === 'branch' ? ['-B', baseRef, local] : ['--detach', local];
  await git(workspace, ['checkout', '--quiet', '--force', ...checkout], null);
  const baseSha = (await git(workspace, ['rev-parse', 'HEAD'], null, { silent: true })).stdout.trim();
  return { baseSha, droppedCredentials };
}

/**
 * Puts the PR commit's objects into .git so the sandbox needs neither a credential nor an allowlist entry for the git
 * server. GitHub serves any commit of the repository (and its forks' PRs) by SHA.
 */
export async function fetchCommit(workspace: string, origin: Origin, sha: string): Promise<void> {
  if (!COMMIT_SHA.test(sha)) throw new GitError(`refusing to fetch '${sha}': not a full commit SHA`);
  await git(workspace, ['fetch', '--no-tags', '--no-recurse-submodules', 'origin', sha], origin);
  const present = await git(workspace, ['cat-file', '-e', `${sha}^{commit}`], null, {
    allowFailure: true,
    silent: true,
  });
  if (present.code !== 0) throw new GitError(`the PR commit ${sha} is not on the server (was the PR force-pushed?)`);
}
