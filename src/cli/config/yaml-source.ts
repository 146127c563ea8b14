import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { ConfigError } from '../errors.js';

/**
 * YAML reading for policy files: positions for every error and `!env NAME` tags. Anything YAML warns about (an
 * unknown tag such as `!secret`, a duplicate key) is an error: a policy file is read strictly or not at all.
 *
 * YAML 1.2 core typing, not Airut's PyYAML 1.1: where a value is a string by nature (env values, secrets, patterns)
 * the loader takes the scalar's text as written, so `010` stays `010` (PyYAML: `8`) and `yes` stays `yes`
 * (PyYAML: `True`); where it is a boolean, `yes/no/on/off` are accepted as PyYAML would read them. Keys are never
 * re-typed (YAML 1.1 would read a variable named `N` or `ON` as a boolean).
 */

export class EnvRef {
  constructor(readonly name: string) {}
}

export type KeyPath = ReadonlyArray<string | number>;

export interface YamlSource {
  file: string;
  doc: Document.Parsed;
  lines: LineCounter;
}

export function dottedPath(path: KeyPath): string {
  return path.length === 0 ? '(top level)' : path.map(String).join('.');
}

export function parseYamlSource(file: string, text: string, allowEnvTags: boolean): YamlSource {
  const lines = new LineCounter();
  const doc = parseDocument(text, {
    version: '1.2',
    schema: 'core',
    lineCounter: lines,
    uniqueKeys: true,
    prettyErrors: true,
    customTags: allowEnvTags
      ? [
          {
            tag: '!env',
            identify: (v: unknown) => v instanceof EnvRef,
            resolve: (s: string) => new EnvRef(s.trim()),
          },
        ]
      : [],
  });
  // Every problem at once: `config check` reports all of them in one run, not one per edit.
  const problems = [...doc.errors, ...doc.warnings].map((problem) => {
    const at = problem.linePos?.[0];
    const where = at ? `${file}:${at.line}:${at.col}` : file;
    let message = problem.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    if (/Unresolved tag/.test(message)) {
      message += allowEnvTags
        ? ' (the only tag airlock understands is `!env NAME`)'
        : ' (this file takes no tags; `!env` is only for sandbox.yaml)';
    }
    if (/Map keys must be unique/.test(message)) message += ' (remove or merge the duplicate key)';
    return `${where}: invalid YAML: ${message}`;
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return { file, doc, lines };
}

/** The node at a key path, or — for a key that should not be there — the key itself. */
function nodeAt(src: YamlSource, path: KeyPath, wantKey = false): Node | undefined {
  let node: unknown = src.doc.contents;
  for (const [i, seg] of path.entries()) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) return isMap(node) ? node : undefined;
      if (wantKey && i === path.length - 1) return pair.key as Node;
      node = pair.value ?? pair.key;
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg];
    } else {
      return node as Node | undefined;
    }
  }
  return node as Node | undefined;
}

export function positionOf(src: YamlSource, path: KeyPath, wantKey = false): string {
  const node = nodeAt(src, path, wantKey) ?? (src.doc.contents as Node | null) ?? undefined;
  const offset = node?.range?.[0];
  if (offset === undefined) return `${src.file}:1:1`;
  const { line, col } = src.lines.linePos(offset);
  return `${src.file}:${line}:${col}`;
}

/** One problem as a line: `file:line:col: key.path: message`. */
export function problemAt(src: YamlSource, path: KeyPath, message: string, wantKey = false): string {
  return `${positionOf(src, path, wantKey)}: ${dottedPath(path)}: ${message}`;
}

export function configErrorAt(src: YamlSource, path: KeyPath, message: string, wantKey = false): ConfigError {
  return new ConfigError(problemAt(src, path, message, wantKey));
}

/** Original text of the scalar at a path (e.g. `010` rather than 8), for values that are strings by nature. */
export function scalarSource(src: YamlSource, path: KeyPath): string | undefined {
  const node = nodeAt(src, path);
  if (isScalar(node)) return typeof node.source === 'string' ? node.source : String(node.value);
  return undefined;
}
