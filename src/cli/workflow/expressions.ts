/**
 * Which `${{ }}` expressions expand to text a pull-request author controls. GitHub substitutes expressions into a
 * `run:` script before the shell parses it, so such a value is code, not data: a PR titled `"; curl … | sh; "` runs.
 */

/**
 * Event fields anyone who opens a PR (or comments on one) can set. `*` stands for one array index or object key.
 * Sources: GitHub Security Lab's list of untrusted inputs, plus the fork's repository description and homepage.
 */
export const PR_CONTROLLED_FIELDS: readonly string[] = [
  'github.head_ref',
  'github.event.pull_request.title',
  'github.event.pull_request.body',
  'github.event.pull_request.head.ref',
  'github.event.pull_request.head.label',
  'github.event.pull_request.head.repo.default_branch',
  'github.event.pull_request.head.repo.description',
  'github.event.pull_request.head.repo.homepage',
  'github.event.issue.title',
  'github.event.issue.body',
  'github.event.comment.body',
  'github.event.review.body',
  'github.event.review_comment.body',
  'github.event.discussion.title',
  'github.event.discussion.body',
  'github.event.pages.*.page_name',
  'github.event.commits.*.message',
  'github.event.commits.*.author.email',
  'github.event.commits.*.author.name',
  'github.event.head_commit.message',
  'github.event.head_commit.author.email',
  'github.event.head_commit.author.name',
  'github.event.workflow_run.head_branch',
  'github.event.workflow_run.head_commit.message',
  'github.event.workflow_run.head_commit.author.email',
  'github.event.workflow_run.head_commit.author.name',
  'github.event.workflow_run.pull_requests.*.head.ref',
];

const FIELD_PATHS = PR_CONTROLLED_FIELDS.map((f) => f.split('.'));

/** `github.event['pull_request'].title`, `github.event.commits[0].message` → dotted segments, lower-cased. */
function segments(reference: string): string[] {
  return reference
    .replace(/\[\s*'([^']*)'\s*\]/g, '.$1')
    .replace(/\[\s*"([^"]*)"\s*\]/g, '.$1')
    .replace(/\[[^\]]*\]/g, '.*')
    .split('.')
    .filter((s) => s !== '')
    .map((s) => s.toLowerCase());
}

/**
 * Whether a context reference reaches PR-controlled text: it names such a field, or an object that contains one
 * (`toJSON(github.event.pull_request)` prints the title too).
 */
export function isPrControlledReference(reference: string): boolean {
  const ref = segments(reference);
  return FIELD_PATHS.some((field) => {
    const n = Math.min(ref.length, field.length);
    for (let i = 0; i < n; i++) {
      if (field[i] !== '*' && ref[i] !== '*' && field[i] !== ref[i]) return false;
    }
    // A reference deeper than the field (`…title.length`) is still derived from it; a shorter one contains it.
    return true;
  });
}

/** A `${{ … }}` occurrence: its text, and its offset inside the string it was found in. */
export interface ExpressionSite {
  expression: string;
  offset: number;
}

export function findExpressions(text: string): ExpressionSite[] {
  const sites: ExpressionSite[] = [];
  const re = /\$\{\{([\s\S]*?)\}\}/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    sites.push({ expression: m[1]!.trim(), offset: m.index });
  }
  return sites;
}

/** Context references inside one expression, string literals removed so `'github.head_ref'` is not one. */
export function contextReferences(expression: string): string[] {
  const code = expression.replace(/'(?:[^']|'')*'/g, "''");
  const refs = code.match(
    /\b(?:github|env|secrets|inputs|steps|needs|matrix|vars)\b(?:\s*\.\s*[\w-]+|\[[^\]]*\]|\.\*)*/g,
  );
  return (refs ?? []).map((r) => r.replace(/\s+/g, ''));
}

/** The PR-controlled references in an expression, following `env.NAME` through the given tainted variables. */
export function prControlledReferences(expression: string, taintedEnv: ReadonlySet<string>): string[] {
  return contextReferences(expression).filter((ref) => {
    const env = /^env\.([\w-]+)$/i.exec(ref);
    if (env) return taintedEnv.has(env[1]!);
    return isPrControlledReference(ref);
  });
}

/** Whether an expression reads a secret: `secrets.X`, or `github.token` (the job's GITHUB_TOKEN). */
export function readsSecret(expression: string): boolean {
  return contextReferences(expression).some((ref) => /^secrets\b/i.test(ref) || /^github\.token$/i.test(ref));
}
