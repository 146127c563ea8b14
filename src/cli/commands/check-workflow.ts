import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { EXIT, UsageError } from '../errors.js';
import { airlockPackage } from '../host/package-root.js';
import { checkWorkflow, formatFinding, type Finding } from '../workflow/check.js';
import { githubAnnotation, sarifLog } from '../workflow/report.js';
import { parseFlags } from './parse-flags.js';
import type { Command } from './types.js';

/** Findings are the command's result, not a failure of airlock: 1, like grep's "found" inverted for linters. */
const EXIT_FINDINGS = 1;

const FORMATS = ['text', 'json', 'github', 'sarif'] as const;
type Format = (typeof FORMATS)[number];

const USAGE = `usage: airlock check-workflow [--format text|json|github|sarif] FILE…

Checks GitHub Actions workflow files against the repository requirements of the airlock action.
Exit 0 when clean, 1 with findings, 2 on a usage error.

  --format text     file:line: rule: explanation (default)
  --format json     {"files": [...], "findings": [...]} (also --json)
  --format github   ::error file=…,line=…:: workflow commands: annotations on the run and the PR
  --format sarif    SARIF 2.1.0 for GitHub code scanning (upload with github/codeql-action/upload-sarif)
`;

/** `airlock check-workflow FILE… [--format F]`: findings on stdout (they are the command's result), usage on stderr. */
export const run: Command = async (argv, ctx) => {
  try {
    return await check(argv, ctx);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    ctx.stderr.write(`airlock check-workflow: ${e.message}\n`);
    return EXIT.usage;
  }
};

const check: Command = async (argv, ctx) => {
  const { values, positionals: files } = parseFlags(
    {
      args: argv,
      options: {
        format: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: true,
    },
    'check-workflow',
  );
  if (values.help) {
    ctx.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (values.format !== undefined && !(FORMATS as readonly string[]).includes(values.format)) {
    throw new UsageError(`--format must be one of ${FORMATS.join(', ')}, not '${values.format}'`);
  }
  if (values.json && values.format !== undefined && values.format !== 'json') {
    throw new UsageError(`--json is --format json; it cannot be combined with --format ${values.format}`);
  }
  const format: Format = values.json ? 'json' : ((values.format as Format | undefined) ?? 'text');
  if (files.length === 0) throw new UsageError(`no workflow file given\n${USAGE}`);

  const findings: Finding[] = [];
  for (const file of files) {
    let source: string;
    try {
      source = await readFile(resolve(ctx.cwd, file), 'utf8');
    } catch (e) {
      const reason = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message;
      throw new UsageError(`${file}: ${reason}`);
    }
    findings.push(...checkWorkflow(source, file));
  }

  switch (format) {
    case 'json':
      ctx.stdout.write(`${JSON.stringify({ files, findings }, null, 2)}\n`);
      break;
    case 'sarif':
      ctx.stdout.write(
        `${JSON.stringify(sarifLog(findings, { version: airlockPackage().version, cwd: ctx.cwd }), null, 2)}\n`,
      );
      break;
    case 'github':
    case 'text':
      for (const f of findings) ctx.stdout.write(`${format === 'github' ? githubAnnotation(f) : formatFinding(f)}\n`);
      if (findings.length > 0) {
        ctx.stderr.write(`${findings.length} finding(s) in ${new Set(findings.map((f) => f.file)).size} file(s)\n`);
      }
      break;
  }
  return findings.length === 0 ? EXIT.ok : EXIT_FINDINGS;
};
