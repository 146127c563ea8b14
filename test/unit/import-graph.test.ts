import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';
import { ESLint, type Linter } from 'eslint';
import ts from 'typescript';
import { parser } from 'typescript-eslint';

/**
 * The import graph of src/ has no circle and no arrow uphill. ESLint's import-x/no-cycle guards runtime circles and
 * the zone rules guard the direction; this file guards what they cannot see (circles made of type-only imports)
 * and guards the guard: if ESLint stopped resolving `./x.js` to `./x.ts`, every zone rule would pass vacuously.
 */

const ROOT = resolve(import.meta.dirname, '../..');
const SRC = join(ROOT, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** file → the files of src/ it imports, type-only and dynamic imports included. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const targets = importedFiles
      .map((i) => i.fileName)
      .filter((spec) => spec.startsWith('.'))
      .map((spec) => resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
    for (const target of targets) assert.ok(existsSync(target), `${relative(ROOT, file)} imports a missing ${target}`);
    graph.set(file, targets);
  }
  return graph;
}

/** Strongly connected components with more than one file (or a file importing itself): the circles. */
function circles(graph: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(relative(ROOT, w));
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

void test('no two files of src/ import each other, not even for types', () => {
  const graph = importGraph();
  assert.ok(graph.size > 50, 'the walk found the sources');
  assert.deepEqual(circles(graph), []);
});

/** Package specifiers a file needs at run time: type-only imports are erased by the compiler and do not count. */
function runtimeImports(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const typeOnly = new Set<string>();
  const runtime = new Set<string>();
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier) {
      const spec = (node.moduleSpecifier as ts.StringLiteral).text;
      const clause = ts.isImportDeclaration(node) ? node.importClause : undefined;
      const erased = ts.isImportDeclaration(node)
        ? clause !== undefined &&
          (clause.isTypeOnly ||
            (clause.name === undefined &&
              clause.namedBindings !== undefined &&
              ts.isNamedImports(clause.namedBindings) &&
              clause.namedBindings.elements.length > 0 &&
              clause.namedBindings.elements.every((e) => e.isTypeOnly)))
        : node.isTypeOnly;
      (erased ? typeOnly : runtime).add(spec);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg && ts.isStringLiteral(arg)) runtime.add(arg.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return [...runtime];
}

void test('src/ needs at run time only node built-ins and its runtime dependencies, and uses each of them', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  const used = new Set<string>();
  for (const file of sourceFiles(SRC)) {
    for (const spec of runtimeImports(file)) {
      if (spec.startsWith('.') || spec.startsWith('node:')) continue;
      const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
      assert.ok(name in pkg.dependencies, `${relative(ROOT, file)} imports ${name}, which is not a dependency`);
      used.add(name);
    }
  }
  assert.deepEqual(
    Object.keys(pkg.dependencies).filter((d) => !used.has(d)),
    [],
    'dependencies src/ never imports',
  );
});

void test('the circle finder finds a circle (so an empty answer above means something)', () => {
  const g = new Map([
    ['a', ['b']],
    ['b', ['c']],
    ['c', ['a']],
    ['d', ['a']],
  ]);
  assert.deepEqual(
    circles(g).map((c) => c.map((f) => f.replace(/^.*[\\/]/, ''))),
    [['a', 'b', 'c']],
  );
});

/** The import-following rules of eslint.config.js, run alone on a probe file placed in a zone. */
async function importRuleProblems(filePath: string, code: string): Promise<string[]> {
  const { default: config } = (await import(pathToFileURL(join(ROOT, 'eslint.config.js')).href)) as {
    default: Linter.Config[];
  };
  const block = config.find((c) => c.rules?.['import-x/no-restricted-paths']);
  assert.ok(block, 'eslint.config.js has the zone rules');
  const eslint = new ESLint({
    cwd: ROOT,
    overrideConfigFile: true,
    overrideConfig: [
      {
        files: ['**/*.ts'],
        languageOptions: { parser },
        plugins: block.plugins!,
        settings: block.settings!,
        rules: {
          'import-x/no-restricted-paths': block.rules!['import-x/no-restricted-paths']!,
          'import-x/no-cycle': block.rules!['import-x/no-cycle']!,
        },
      },
    ],
  });
  const [result] = await eslint.lintText(code, { filePath: join(ROOT, filePath) });
  return result!.messages.map((m) => `${m.ruleId}: ${m.message}`);
}

void test('the zone rules resolve imports and refuse an arrow uphill', async () => {
  const upward = await importRuleProblems(
    'src/protocol/probe.ts',
    "import { EXIT } from '../cli/errors.js';\nexport const x = EXIT;\n",
  );
  assert.equal(upward.length, 1, upward.join('\n'));
  assert.match(upward[0]!, /no-restricted-paths.*protocol is pure/);

  const intoSession = await importRuleProblems(
    'src/cli/engine/probe.ts',
    "import type { Logger } from '../session/log.js';\nexport type L = Logger;\n",
  );
  assert.match(intoSession.join('\n'), /no-restricted-paths.*cli\/engine sits below .*cli\/session/);

  const downward = await importRuleProblems(
    'src/cli/session/probe.ts',
    "import { EngineError } from '../errors.js';\nimport { mountArg } from '../engine/run-args.js';\nexport const x = [EngineError, mountArg];\n",
  );
  assert.deepEqual(downward, []);
});
