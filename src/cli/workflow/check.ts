import { canRunOn } from './conditions.js';
import { findExpressions, prControlledReferences, readsSecret } from './expressions.js';
import {
  parseWorkflow,
  WorkflowSyntaxError,
  type EnvEntry,
  type Job,
  type LocatedText,
  type Step,
  type Workflow,
} from './model.js';

/**
 * `airlock check-workflow`: static checks that a workflow keeps the promises the sandbox relies on (see
 * docs/github-action.md). Rule ids are stable; the documentation lists each with its fix.
 */

export const RULES = {
  'pr-trigger-unprotected': {
    severity: 'error',
    summary:
      'A pull_request(_target) trigger of a workflow that runs airlock has no `branches:` filter naming protected branches.',
  },
  'pr-target-checkout': {
    severity: 'error',
    summary: 'A pull_request_target workflow checks out PR code, which then runs with the base repository’s secrets.',
  },
  'step-after-airlock': {
    severity: 'error',
    summary: 'A step follows the airlock step in the same job; the workspace is tainted after the sandbox ran.',
  },
  'expression-injection': {
    severity: 'error',
    summary: 'A `${{ }}` expression of a PR-controlled field is pasted into a script, so the PR author writes code.',
  },
  'persist-credentials': {
    severity: 'error',
    summary: 'actions/checkout leaves the job token in .git/config, where code in the workspace can read it.',
  },
  'pr-code-outside-sandbox': {
    severity: 'error',
    summary: 'A step runs after PR code was checked out, outside the airlock sandbox.',
  },
  'pr-code-with-secrets': {
    severity: 'error',
    summary: 'A step runs PR code outside the sandbox and secrets reach it through `env:` or `with:`.',
  },
  'policy-from-pr': {
    severity: 'error',
    summary: '`airlock run` runs after a checkout of PR code, so it enforces the PR’s own .airlock/ policy.',
  },
  'invalid-workflow': {
    severity: 'error',
    summary: 'The file is not a readable workflow, so nothing in it could be checked.',
  },
} as const satisfies Record<string, { severity: 'error' | 'warning'; summary: string }>;

export type RuleId = keyof typeof RULES;

export interface Finding {
  file: string;
  line: number;
  rule: RuleId;
  severity: 'error' | 'warning';
  message: string;
}

export function formatFinding(f: Finding): string {
  return `${f.file}:${f.line}: ${f.rule}: ${f.message}`;
}

const PR_EVENTS = new Set(['pull_request', 'pull_request_target']);

/**
 * `uses: <owner>/airlock@<ref>` (any owner, optionally a sub-path), `uses: ./` (the action repository itself), or
 * Airut's `airutorg/sandbox-action@<ref>`, which airlock replaces and which makes the same promises.
 */
export function isAirlockUses(uses: string): boolean {
  const u = uses.trim();
  return (
    /^[\w.-]+\/airlock(?:\/[^@\s]*)?@\S+$/i.test(u) || /^airutorg\/sandbox-action@\S+$/i.test(u) || /^\.\/?$/.test(u)
  );
}

/** A shell line that invokes `airlock run` (also through npx or a path). */
export function invokesAirlockRun(script: string): boolean {
  return /(?:^|[\s;&|(`'"])(?:npx\s+(?:--yes\s+)?)?(?:[^\s;&|()`'"]*\/)?airlock\s+run\b/m.test(script);
}

function isAirlockStep(step: Step): boolean {
  return (
    (step.uses !== null && isAirlockUses(step.uses.value)) || (step.run !== null && invokesAirlockRun(step.run.value))
  );
}

function isCheckoutAction(step: Step): boolean {
  return step.uses !== null && /^actions\/checkout@/i.test(step.uses.value.trim());
}

/** Expressions that name the PR's own commits or branch (as opposed to the base branch). */
const PR_HEAD_REF =
  /pull_request\.head\.(?:sha|ref)|github\.head_ref|pull_request\.merge_commit_sha|head\.repo\.full_name|refs\/pull\//i;

/**
 * Whether a step puts PR code into the workspace. Under `pull_request`, actions/checkout's default ref *is* the PR
 * (its merge commit); under other events only an explicit head ref is.
 */
function checksOutPrCode(step: Step, prTriggered: boolean, env: EnvEntry[]): boolean {
  if (isCheckoutAction(step)) {
    const ref = step.with.get('ref')?.value ?? '';
    const repository = step.with.get('repository')?.value ?? '';
    if (PR_HEAD_REF.test(ref) || PR_HEAD_REF.test(repository)) return true;
    if (!prTriggered) return false;
    // Under pull_request github.sha and github.ref are the PR's merge commit and refs/pull/N/merge.
    return ref.trim() === '' || /\bgithub\.(?:sha|ref)\b/i.test(ref);
  }
  if (step.run !== null && !invokesAirlockRun(step.run.value)) {
    const script = step.run.value;
    if (/\bgh\s+pr\s+checkout\b/.test(script)) return true;
    // Fetching PR objects is harmless (the action does it); putting them in the work tree is not.
    if (!/\bgit\s+(?:checkout|switch|merge|pull|reset|worktree\s+add)\b/.test(script)) return false;
    if (PR_HEAD_REF.test(script)) return true;
    return env.some(
      (e) => PR_HEAD_REF.test(e.value.value) && new RegExp(`\\$\\{?${e.name.replace(/\W/g, '\\$&')}\\b`).test(script),
    );
  }
  return false;
}

/** Line of a character offset inside a scalar's source text. */
function lineInside(workflow: Workflow, text: LocatedText, offsetInRaw: number): number {
  return workflow.lineOf(text.offset + offsetInRaw);
}

function taintedEnvNames(...levels: EnvEntry[][]): Set<string> {
  const names = new Set<string>();
  for (const level of levels) {
    for (const entry of level) {
      const tainted = findExpressions(entry.value.raw).some(
        (site) => prControlledReferences(site.expression, names).length > 0,
      );
      if (tainted) names.add(entry.name);
      else names.delete(entry.name);
    }
  }
  return names;
}

function secretsReaching(workflow: Workflow, job: Job, step: Step): string[] {
  const names: string[] = [];
  for (const entry of [...workflow.env, ...job.env, ...step.env]) {
    if (findExpressions(entry.value.raw).some((s) => readsSecret(s.expression))) names.push(entry.name);
  }
  for (const [key, value] of step.with) {
    if (findExpressions(value.raw).some((s) => readsSecret(s.expression))) names.push(`with.${key}`);
  }
  if (step.run && findExpressions(step.run.raw).some((s) => readsSecret(s.expression))) names.push('run (inline)');
  return names;
}

function stepLabel(step: Step): string {
  const what = step.name ?? step.uses?.value ?? (step.run ? 'run' : 'step');
  return `step ${step.index + 1} (${what})`;
}

/** The workflow's triggers under which the job's `if:` can hold (`if: github.event_name == 'push'` drops the rest). */
function jobEvents(workflow: Workflow, job: Job): Set<string> {
  return new Set(workflow.triggers.map((t) => t.event).filter((event) => canRunOn(job.if?.value ?? null, event)));
}

function checkJob(workflow: Workflow, job: Job, file: string, findings: Finding[]): void {
  const triggers = jobEvents(workflow, job);
  const prTriggered = triggers.has('pull_request');
  const targetTriggered = triggers.has('pull_request_target');
  const hasAirlock = job.steps.some(isAirlockStep);
  const add = (line: number, rule: RuleId, message: string): void => {
    findings.push({ file, line, rule, severity: RULES[rule].severity, message });
  };

  let airlockStep: Step | null = null;
  let prCheckout: Step | null = null;
  for (const step of job.steps) {
    const airlock = isAirlockStep(step);

    if (airlockStep !== null) {
      add(
        step.line,
        'step-after-airlock',
        `${stepLabel(step)} of job '${job.id}' runs after the airlock step (line ${airlockStep.line}), in a workspace and .git the PR code could rewrite; move it to a separate job`,
      );
    }

    const tainted = taintedEnvNames(workflow.env, job.env, step.env);
    const scripts: Array<[string, LocatedText]> = [];
    if (step.run) scripts.push(['run', step.run]);
    const script = step.with.get('script');
    if (script && step.uses && /^actions\/github-script@/i.test(step.uses.value.trim()))
      scripts.push(['script', script]);
    for (const [kind, text] of scripts) {
      for (const site of findExpressions(text.raw)) {
        const refs = prControlledReferences(site.expression, tainted);
        if (refs.length === 0) continue;
        add(
          lineInside(workflow, text, site.offset),
          'expression-injection',
          `\`\${{ ${site.expression} }}\` in \`${kind}:\` expands PR-controlled ${refs.join(', ')} into the script before it is parsed; pass it through \`env:\` and use "$VAR" instead`,
        );
      }
    }

    const stepOnPr = prTriggered && canRunOn(step.if?.value ?? null, 'pull_request');
    const prCode = checksOutPrCode(step, stepOnPr, [...workflow.env, ...job.env, ...step.env]);
    if (isCheckoutAction(step) && step.with.get('persist-credentials')?.value.trim().toLowerCase() !== 'false') {
      if (hasAirlock || prCode) {
        const why = hasAirlock
          ? 'the workspace is mounted into the sandbox, so PR code could read the token'
          : 'the PR code checked out here can read the token';
        add(
          step.line,
          'persist-credentials',
          `actions/checkout keeps the job token in .git/config and ${why}; set \`with: persist-credentials: false\``,
        );
      }
    }
    if (prCode && targetTriggered && !airlock) {
      add(
        step.line,
        'pr-target-checkout',
        `${stepLabel(step)} checks out PR code in a pull_request_target workflow, which runs with the base repository's secrets and a write token; run the PR inside airlock instead`,
      );
    }

    const runsWorkspaceCode = step.run !== null || (step.uses !== null && step.uses.value.trim().startsWith('./'));
    if (prCheckout !== null && runsWorkspaceCode && !(airlock && step.run !== null)) {
      const fromPr = step.uses !== null && step.uses.value.trim().startsWith('./');
      const what = fromPr
        ? `uses the local action ${step.uses!.value.trim()}, whose code comes from the PR checked out at line ${prCheckout.line}`
        : `runs after PR code was checked out (line ${prCheckout.line}) without the sandbox`;
      const secrets = secretsReaching(workflow, job, step);
      if (secrets.length > 0) {
        add(
          step.line,
          'pr-code-with-secrets',
          `${stepLabel(step)} ${what}, and secrets reach it through ${secrets.join(', ')}; run it inside airlock (masked_secrets) instead`,
        );
      } else {
        add(step.line, 'pr-code-outside-sandbox', `${stepLabel(step)} ${what}; run it inside airlock instead`);
      }
    }

    if (prCheckout !== null && airlock && step.run !== null) {
      add(
        step.line,
        'policy-from-pr',
        `${stepLabel(step)} runs airlock on the PR checked out at line ${prCheckout.line}, so the .airlock/ policy it enforces is the PR's own; check out the base branch and merge the PR inside the sandbox (the airlock action does this)`,
      );
    }

    if (prCode && prCheckout === null) prCheckout = step;
    if (airlock && airlockStep === null) airlockStep = step;
  }
}

export function checkWorkflow(source: string, file: string): Finding[] {
  let workflow: Workflow;
  try {
    workflow = parseWorkflow(source);
  } catch (e) {
    if (!(e instanceof WorkflowSyntaxError)) throw e;
    return [{ file, line: e.line, rule: 'invalid-workflow', severity: 'error', message: e.message }];
  }
  const findings: Finding[] = [];
  const airlockJobs = workflow.jobs.filter((j) => j.steps.some(isAirlockStep));
  if (airlockJobs.length > 0) {
    for (const trigger of workflow.triggers) {
      if (!PR_EVENTS.has(trigger.event)) continue;
      // A PR trigger that no airlock job runs on is not the sandbox's business.
      if (!airlockJobs.some((j) => jobEvents(workflow, j).has(trigger.event))) continue;
      const wildcard = trigger.branches?.find((b) => /^\*{1,2}$/.test(b.trim()));
      if (trigger.branches === null || trigger.branches.length === 0) {
        findings.push({
          file,
          line: trigger.line,
          rule: 'pr-trigger-unprotected',
          severity: 'error',
          message: `\`${trigger.event}\` has no \`branches:\` filter, so a PR into any branch (one the author can push policy to) runs with that branch's .airlock/ policy; list protected branches, e.g. \`branches: [main]\``,
        });
      } else if (wildcard !== undefined) {
        findings.push({
          file,
          line: trigger.line,
          rule: 'pr-trigger-unprotected',
          severity: 'error',
          message: `\`${trigger.event}\` branch filter '${wildcard}' matches every branch; list protected branches only`,
        });
      } else if (trigger.branches.every((b) => b.trim().startsWith('!'))) {
        // Only exclusions: every other branch, including ones a PR author can create, still triggers.
        findings.push({
          file,
          line: trigger.line,
          rule: 'pr-trigger-unprotected',
          severity: 'error',
          message: `\`${trigger.event}\` branch filter only excludes branches, so PRs into every other branch run; list protected branches only`,
        });
      }
    }
  }
  for (const job of workflow.jobs) checkJob(workflow, job, file, findings);
  return findings.sort((a, b) => a.line - b.line);
}
