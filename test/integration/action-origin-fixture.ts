import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * A local stand-in for a GitHub repository: a bare "origin" under `<root>/server/<owner>/<repo>` (so
 * GITHUB_SERVER_URL=file://<root>/server works), a base branch, and a PR commit pushed as `refs/pull/1/head`.
 */

export interface FakeOrigin {
  serverUrl: string;
  repository: string;
  bareDir: string;
  baseRef: string;
  baseSha: string;
  prSha: string;
}

export type FileTree = Record<string, string | null>;

const IDENTITY = [
  '-c',
  'user.name=Test Author',
  '-c',
  'user.email=author@example.invalid',
  '-c',
  'commit.gpgsign=false',
];

export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', [...IDENTITY, ...args], {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

function writeTree(dir: string, files: FileTree): void {
  for (const [name, content] of Object.entries(files)) {
    const file = join(dir, name);
    if (content === null) rmSync(file, { force: true });
    else {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, content, { mode: name.endsWith('.sh') ? 0o755 : 0o644 });
    }
  }
}

export function createOrigin(root: string, base: FileTree, pr: FileTree, repository = 'acme/widget'): FakeOrigin {
  const server = join(root, 'server');
  const bareDir = join(server, repository);
  mkdirSync(bareDir, { recursive: true });
  git(bareDir, 'init', '--quiet', '--bare', '--initial-branch=main');
  // GitHub serves any reachable commit by SHA; a plain git server needs this to do the same.
  git(bareDir, 'config', 'uploadpack.allowAnySHA1InWant', 'true');

  const author = join(root, 'author');
  mkdirSync(author, { recursive: true });
  git(author, 'init', '--quiet', '--initial-branch=main');
  writeTree(author, base);
  git(author, 'add', '-A');
  git(author, 'commit', '--quiet', '-m', 'base');
  const baseSha = git(author, 'rev-parse', 'HEAD');
  git(author, 'push', '--quiet', bareDir, 'main:refs/heads/main');

  git(author, 'checkout', '--quiet', '-b', 'feature');
  writeTree(author, pr);
  git(author, 'add', '-A');
  git(author, 'commit', '--quiet', '-m', 'pr');
  const prSha = git(author, 'rev-parse', 'HEAD');
  git(author, 'push', '--quiet', bareDir, 'feature:refs/pull/1/head');
  return { serverUrl: pathToFileURL(server).href, repository, bareDir, baseRef: 'main', baseSha, prSha };
}

/** Adds a commit to the base branch after the PR was cut (for merge and conflict cases). */
export function advanceBase(root: string, origin: FakeOrigin, files: FileTree): string {
  const author = join(root, 'author');
  git(author, 'checkout', '--quiet', 'main');
  writeTree(author, files);
  git(author, 'add', '-A');
  git(author, 'commit', '--quiet', '-m', 'base moves on');
  git(author, 'push', '--quiet', origin.bareDir, 'main:refs/heads/main');
  const sha = git(author, 'rev-parse', 'HEAD');
  origin.baseSha = sha;
  return sha;
}
