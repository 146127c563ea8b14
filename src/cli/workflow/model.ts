import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Node } from 'yaml';

/**
 * The parts of a GitHub Actions workflow the checker reasons about, each with the line it came from so findings read
 * `file:line: rule: explanation`. Anything the checker does not understand is kept out rather than guessed.
 */

/** A string value and where it stands; `raw` is the source text of the scalar, so expression offsets map to lines. */
export interface LocatedText {
  value: string;
  line: number;
  /** Source offset of `raw`; `raw` is the scalar exactly as written (quotes and block indicators included). */
  offset: number;
  raw: string;
}

export interface EnvEntry {
  name: string;
  value: LocatedText;
}

export interface Trigger {
  event: string;
  line: number;
  /** `branches:` patterns, or null when the trigger has none (`branches-ignore` is not a filter to protected branches). */
  branches: string[] | null;
}

export interface Step {
  /** 0-based position in the job. */
  index: number;
  line: number;
  name: string | null;
  /** The step's `if:` condition, as written. */
  if: LocatedText | null;
  uses: LocatedText | null;
  run: LocatedText | null;
  with: Map<string, LocatedText>;
  env: EnvEntry[];
}

export interface Job {
  id: string;
  line: number;
  /** The job's `if:` condition, as written. */
  if: LocatedText | null;
  env: EnvEntry[];
  steps: Step[];
}

export interface Workflow {
  triggers: Trigger[];
  env: EnvEntry[];
  jobs: Job[];
  /** Maps a source offset to its 1-based line. */
  lineOf(offset: number): number;
}

export class WorkflowSyntaxError extends Error {
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(message);
  }
}

export function parseWorkflow(source: string): Workflow {
  const lines = new LineCounter();
  // GitHub reads workflows as YAML 1.2, where `on` is a string key (YAML 1.1 would make it `true`).
  const doc = parseDocument(source, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  // An error at end of input (an unclosed quote) is reported on the last line that exists, not the one after it.
  const lastLine = source.replace(/\n$/, '').split('\n').length;
  const lineOf = (offset: number): number => Math.min(lines.linePos(offset).line, lastLine);
  const problem = doc.errors[0];
  if (problem) {
    throw new WorkflowSyntaxError(
      problem.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, ''),
      lineOf(problem.pos[0]),
    );
  }
  const root = doc.contents;
  if (!isMap(root)) throw new WorkflowSyntaxError('a workflow is a mapping with `on:` and `jobs:`', 1);

  const nodeLine = (node: Node | null | undefined, fallback: number): number =>
    node?.range ? lineOf(node.range[0]) : fallback;

  const text = (node: unknown): LocatedText | null => {
    if (!isScalar(node) || !node.range) return null;
    const v = node.value;
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') return null;
    return {
      value: String(v),
      line: lineOf(node.range[0]),
      offset: node.range[0],
      raw: source.slice(node.range[0], node.range[1]),
    };
  };

  const entries = (map: unknown): Array<{ key: string; keyLine: number; value: unknown }> => {
    if (!isMap(map)) return [];
    const out: Array<{ key: string; keyLine: number; value: unknown }> = [];
    for (const pair of map.items) {
      if (!isPair(pair) || !isScalar(pair.key)) continue;
      const key = pair.key.value === true ? 'on' : String(pair.key.value);
      out.push({ key, keyLine: nodeLine(pair.key, 1), value: pair.value });
    }
    return out;
  };
  const field = (map: unknown, key: string): unknown => entries(map).find((e) => e.key === key)?.value;

  const envOf = (map: unknown): EnvEntry[] =>
    entries(field(map, 'env')).flatMap(({ key, value }) => {
      const t = text(value);
      return t ? [{ name: key, value: t }] : [];
    });

  const triggers: Trigger[] = [];
  const on = entries(root).find((e) => e.key === 'on');
  if (on) {
    const onValue = on.value;
    if (isScalar(onValue)) {
      const event = text(onValue);
      if (event) triggers.push({ event: event.value, line: event.line, branches: null });
    } else if (isSeq(onValue)) {
      for (const item of onValue.items) {
        const event = text(item);
        if (event) triggers.push({ event: event.value, line: event.line, branches: null });
      }
    } else {
      for (const { key, keyLine, value } of entries(onValue)) {
        const branches = field(value, 'branches');
        let list: string[] | null = null;
        const single = text(branches);
        if (isSeq(branches)) list = branches.items.flatMap((b) => text(b)?.value ?? []);
        else if (single) list = [single.value];
        triggers.push({ event: key, line: keyLine, branches: list });
      }
    }
  }

  const jobs: Job[] = entries(field(root, 'jobs')).map(({ key, keyLine, value }) => {
    const stepsNode = field(value, 'steps');
    const steps: Step[] = isSeq(stepsNode)
      ? stepsNode.items.map((item, index) => {
          const withEntries = new Map<string, LocatedText>();
          for (const w of entries(field(item, 'with'))) {
            const t = text(w.value);
            if (t) withEntries.set(w.key, t);
          }
          const name = text(field(item, 'name'));
          return {
            index,
            line: nodeLine(item as Node, keyLine),
            name: name?.value ?? null,
            if: text(field(item, 'if')),
            uses: text(field(item, 'uses')),
            run: text(field(item, 'run')),
            with: withEntries,
            env: envOf(item),
          };
        })
      : [];
    return { id: key, line: keyLine, if: text(field(value, 'if')), env: envOf(value), steps };
  });

  return { triggers, env: envOf(root), jobs, lineOf };
}
