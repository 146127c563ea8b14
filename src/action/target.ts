/**
 * What the action checks out and what it tests, from the triggering event. The base branch is where the trusted
 * policy (.airlock/) comes from; the PR commit is only ever handled as data on the host and merged inside the sandbox.
 */

import { AirlockError, EXIT } from '../cli/errors.js';

export interface RunTarget {
  /** Branch (or tag) whose tip is checked out on the host (its .airlock/ is the enforced policy). */
  baseRef: string;
  /** Whether `baseRef` names a branch or a tag (a `release` or tag-push event). */
  baseKind: 'branch' | 'tag';
  /** Full commit SHA merged (or checked out) inside the sandbox. */
  prSha: string;
  /** Said to the user as a workflow warning. */
  warnings: string[];
}

/** The triggering event gives the action nothing it can test (or it does not run on a GitHub runner). */
export class TargetError extends AirlockError {
  constructor(message: string) {
    super(message, EXIT.airlock, 'target');
  }
}

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
  merge_group?: { base_ref?: unknown; head_sha?: unknown };
  after?: unknown;
  repository?: { default_branch?: unknown };
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** `refs/heads/x` or `refs/tags/x` from GITHUB_REF, the base of every event that names no other. */
function refBase(eventName: string, ref: string | undefined): { ref: string; kind: 'branch' | 'tag' } {
  if (ref?.startsWith('refs/heads/')) return { ref, kind: 'branch' };
  if (ref?.startsWith('refs/tags/')) return { ref: ref.slice('refs/tags/'.length), kind: 'tag' };
  throw new TargetError(
    `the ${eventName} event ran on '${ref ?? ''}', which is neither a branch nor a tag; the action needs one to take the policy from`,
  );
}

/**
 * Where the policy comes from and what is tested, as sandbox-action decides it (`pull_request.base.ref ||
 * github.ref_name`), for every event:
 *
 * - any event carrying a pull request (`pull_request`, `pull_request_target`, reviews, …): the PR's base branch and
 *   head commit;
 * - `merge_group`: the queue's target branch (`merge_group.base_ref`) and the group's head commit. sandbox-action
 *   takes `ref_name` here, the temporary `gh-readonly-queue/…` branch that already contains the queued PRs, so their
 *   own .airut/ would be the policy: a deliberate difference;
 * - everything else (`push`, `schedule`, `workflow_dispatch`, `workflow_call`, `workflow_run`, `release`, …): the
 *   branch or tag the run is on (GITHUB_REF) and its commit (`after` for a push, else GITHUB_SHA). The base is
 *   whatever that branch holds, so off the default branch (and always for `workflow_dispatch`, which can name any
 *   branch) a warning asks for a human to have reviewed it.
 */
export function resolveTarget(
  eventName: string,
  event: EventPayload,
  env: NodeJS.ProcessEnv,
  prShaInput: string,
): RunTarget {
  const warnings: string[] = [];
  let base: { ref: string | undefined; kind: 'branch' | 'tag' };
  let defaultSha: string | undefined;
  const prBase = str(event.pull_request?.base?.ref);
  if (prBase !== undefined || eventName === 'pull_request' || eventName === 'pull_request_target') {
    base = { ref: prBase, kind: 'branch' };
    defaultSha = str(event.pull_request?.head?.sha);
  } else if (eventName === 'merge_group') {
    base = { ref: str(event.merge_group?.base_ref), kind: 'branch' };
    defaultSha = str(event.merge_group?.head_sha) ?? str(env.GITHUB_SHA);
  } else {
    base = refBase(eventName, env.GITHUB_REF);
    defaultSha = (eventName === 'push' ? str(event.after) : undefined) ?? str(env.GITHUB_SHA);
    const name = base.kind === 'branch' ? base.ref!.replace(/^refs\/heads\//, '') : base.ref!;
    const defaultBranch = str(event.repository?.default_branch);
    if (eventName === 'workflow_dispatch') {
      warnings.push(
        `workflow_dispatch: the policy in .airlock/ comes from the dispatched ${base.kind} '${name}'; make sure a human reviewed that ${base.kind}`,
      );
    } else if (eventName !== 'push' && defaultBranch !== undefined && (base.kind === 'tag' || name !== defaultBranch)) {
      warnings.push(
        `${eventName}: the policy in .airlock/ comes from the ${base.kind} '${name}', not the default branch '${defaultBranch}'; make sure that ${base.kind} is protected`,
      );
    }
  }
  if (base.ref === undefined) throw new TargetError(`the ${eventName} event does not name a base branch`);
  const prSha = (prShaInput.trim() || defaultSha || '').toLowerCase();
  if (!COMMIT_SHA.test(prSha)) {
    throw new TargetError(
      prShaInput.trim()
        ? `pr-sha must be a full commit SHA (40 or 64 hex digits), got '${prShaInput.trim()}'`
        : `the ${eventName} event has no commit to test; set the pr-sha input`,
    );
  }
  return { baseRef: branchName(base.ref), baseKind: base.kind, prSha, warnings };
}
