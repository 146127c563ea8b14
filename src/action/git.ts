import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { getExecOutput } from '@actions/exec';
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

export class GitError extends Error {}

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

/** Removes credentials an earlier step may have persisted (actions/checkout with persist-credentials: true). */
async function dropPersistedCredentials(workspace: string): Promise<string[]> {
  const listed = await git(
    workspace,
    ['config', '--local', '--name-only', '--get-regexp', '^http\\..*\\.extraheader$'],
    null,
    {
      allowFailure: true,
      silent: true,
    },
  );
  const keys = [
    ...new Set(
      listed.stdout
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean),
    ),
  ];
  for (const key of keys) await git(workspace, ['config', '--local', '--unset-all', key], null, { silent: true });
  return keys;
}

/**
 * Makes `workspace` a clean checkout of `baseRef` from `origin` and returns the base commit. Untracked files are
 * removed too: a leftover `.airlock/network-allowlist.yaml` must not stand in for a policy the base lacks.
 */
export async function checkoutBase(
  workspace: string,
  origin: Origin,
  baseRef: string,
): Promise<{ baseSha: string; droppedCredentials: string[] }> {
  if (!existsSync(join(workspace, '.git'))) await git(workspace, ['init', '--quiet'], null);
  const remotes = (await git(workspace, ['remote'], null, { silent: true })).stdout.split('\n');
  if (remotes.includes('origin')) await git(workspace, ['remote', 'set-url', 'origin', origin.url], null);
  else await git(workspace, ['remote', 'add', 'origin', origin.url], null);
  const droppedCredentials = await dropPersistedCredentials(workspace);
  // A shallow clone from an earlier step would leave `git merge` in the sandbox without a merge base.
  const unshallow = existsSync(join(workspace, '.git', 'shallow')) ? ['--unshallow'] : [];
  await git(
    workspace,
    [
      'fetch',
      '--no-tags',
      '--no-recurse-submodules',
      ...unshallow,
      'origin',
      `+refs/heads/${baseRef}:refs/remotes/origin/${baseRef}`,
    ],
    origin,
  );
  await git(workspace, ['checkout', '--quiet', '--force', '-B', baseRef, `refs/remotes/origin/${baseRef}`], null);
  await git(workspace, ['clean', '-ffdxq'], null);
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
