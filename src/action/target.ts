/**
 * What the action checks out and what it tests, from the triggering event. The base branch is where the trusted
 * policy (.airlock/) comes from; the PR commit is only ever handled as data on the host and merged inside the sandbox.
 */

export interface RunTarget {
  /** Branch whose tip is checked out on the host (its .airlock/ is the enforced policy). */
  baseRef: string;
  /** Full commit SHA merged (or checked out) inside the sandbox. */
  prSha: string;
  /** Said to the user as a workflow warning. */
  warnings: string[];
}

export class TargetError extends Error {}

/** A full object name; anything else (a branch name, `--upload-pack=…`) never reaches git's argv. */
export const COMMIT_SHA = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** `refs/heads/x` → `x`; rejects names git would read as options or that are not branch names at all. */
export function branchName(ref: string): string {
  const name = ref.replace(/^refs\/heads\//, '');
  if (
    name === '' ||
    name.startsWith('-') ||
    /[\s~^:?*[\\]|\.\.|@\{|^\/|\/$|\.lock$/.test(name) ||
    name.startsWith('refs/')
  ) {
    throw new TargetError(`'${ref}' is not a branch the action can check out as the base`);
  }
  return name;
}

interface EventPayload {
  pull_request?: { head?: { sha?: unknown }; base?: { ref?: unknown } };
  after?: unknown;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/**
 * `pull_request` / `pull_request_target`: the PR's base branch and head commit. `push`: the pushed branch, and the
 * pushed commit as the one to test. `workflow_dispatch`: the dispatched branch, with a warning, since a dispatch can
 * name any branch and its .airlock/ policy is then whatever that branch holds.
 */
export function resolveTarget(
  eventName: string,
  event: EventPayload,
  env: NodeJS.ProcessEnv,
  prShaInput: string,
): RunTarget {
  const warnings: string[] = [];
  let baseRef: string | undefined;
  let defaultSha: string | undefined;
  switch (eventName) {
    case 'pull_request':
    case 'pull_request_target':
      baseRef = str(event.pull_request?.base?.ref);
      defaultSha = str(event.pull_request?.head?.sha);
      break;
    case 'push':
      if (!env.GITHUB_REF?.startsWith('refs/heads/')) {
        throw new TargetError(`push of '${env.GITHUB_REF ?? ''}' is not a branch push; the action needs a base branch`);
      }
      baseRef = env.GITHUB_REF;
      defaultSha = str(event.after) ?? str(env.GITHUB_SHA);
      break;
    case 'workflow_dispatch':
      baseRef = env.GITHUB_REF;
      defaultSha = str(env.GITHUB_SHA);
      warnings.push(
        `workflow_dispatch: the policy in .airlock/ comes from the dispatched branch '${env.GITHUB_REF_NAME ?? baseRef ?? ''}'; make sure a human reviewed that branch`,
      );
      break;
    default:
      throw new TargetError(
        `the airlock action runs on pull_request, pull_request_target, push and workflow_dispatch, not '${eventName}'`,
      );
  }
  if (baseRef === undefined) throw new TargetError(`the ${eventName} event does not name a base branch`);
  const prSha = (prShaInput.trim() || defaultSha || '').toLowerCase();
  if (!COMMIT_SHA.test(prSha)) {
    throw new TargetError(
      prShaInput.trim()
        ? `pr-sha must be a full commit SHA (40 or 64 hex digits), got '${prShaInput.trim()}'`
        : `the ${eventName} event has no commit to test; set the pr-sha input`,
    );
  }
  return { baseRef: branchName(baseRef), prSha, warnings };
}
