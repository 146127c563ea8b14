/**
 * The `airlock run` argv for the PR's job. The PR SHA and the workflow's command are positional parameters of a fixed
 * bash script — data, never spliced into shell text — so no SHA or command can change what the script does.
 */

/** `$1` is the PR commit, `$2` the command. The identity is only for the merge commit inside the sandbox. */
const GIT = `git -c safe.directory='*' -c user.name=airlock -c user.email=airlock@localhost.invalid`;

export const SANDBOX_SCRIPTS = {
  merge: `${GIT} merge --no-edit "$1" || { echo "airlock: could not merge $1 into the base branch (see the conflict above); the command did not run" >&2; exit 1; }; eval "$2"`,
  checkout: `${GIT} checkout --quiet --detach "$1" || { echo "airlock: could not check out $1; the command did not run" >&2; exit 1; }; eval "$2"`,
} as const;

export interface SandboxInvocation {
  /** Words from the `sandbox-args` input, split on whitespace (no quote handling, like Airut). */
  sandboxArgs: string[];
  /** Options for the run command that the action itself adds (network log paths, image age, engine). */
  actionArgs: string[];
  mode: 'merge' | 'checkout';
  prSha: string;
  command: string;
}

/** argv for the CLI's `run` command (after the word `run`). */
export function sandboxRunArgv(inv: SandboxInvocation): string[] {
  return [
    ...inv.sandboxArgs,
    ...inv.actionArgs,
    '--',
    'bash',
    '-c',
    SANDBOX_SCRIPTS[inv.mode],
    'airlock-pr',
    inv.prSha,
    inv.command,
  ];
}

export function splitWords(input: string): string[] {
  return input.split(/\s+/).filter((w) => w !== '');
}
