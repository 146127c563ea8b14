import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { EXIT } from '../errors.js';
import { checkWorkflow, formatFinding, type Finding } from '../workflow/check.js';
import type { Command } from './types.js';

/** Findings are the command's result, not a failure of airlock: 1, like grep's "found" inverted for linters. */
const EXIT_FINDINGS = 1;

const USAGE = `usage: airlock check-workflow [--json] FILE…

Checks GitHub Actions workflow files against the repository requirements of the airlock action.
Exit 0 when clean, 1 with findings (file:line: rule: explanation), 2 on a usage error.
`;

/** `airlock check-workflow FILE… [--json]`: findings on stdout (they are the command's result), usage on stderr. */
export const run: Command = async (argv, ctx) => {
  let json = false;
  const files: string[] = [];
  let optionsEnded = false;
  for (const arg of argv) {
    if (!optionsEnded && arg === '--') optionsEnded = true;
    else if (!optionsEnded && arg === '--json') json = true;
    else if (!optionsEnded && (arg === '-h' || arg === '--help')) {
      ctx.stdout.write(USAGE);
      return EXIT.ok;
    } else if (!optionsEnded && arg.startsWith('-') && arg !== '-') {
      ctx.stderr.write(`airlock check-workflow: unknown option ${arg}\n${USAGE}`);
      return EXIT.usage;
    } else files.push(arg);
  }
  if (files.length === 0) {
    ctx.stderr.write(`airlock check-workflow: no workflow file given\n${USAGE}`);
    return EXIT.usage;
  }

  const findings: Finding[] = [];
  for (const file of files) {
    let source: string;
    try {
      source = await readFile(resolve(ctx.cwd, file), 'utf8');
    } catch (e) {
      const reason = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message;
      ctx.stderr.write(`airlock check-workflow: ${file}: ${reason}\n`);
      return EXIT.usage;
    }
    findings.push(...checkWorkflow(source, file));
  }

  if (json) {
    ctx.stdout.write(`${JSON.stringify({ files, findings }, null, 2)}\n`);
  } else {
    for (const f of findings) ctx.stdout.write(`${formatFinding(f)}\n`);
    if (findings.length > 0) {
      ctx.stderr.write(`${findings.length} finding(s) in ${new Set(findings.map((f) => f.file)).size} file(s)\n`);
    }
  }
  return findings.length === 0 ? EXIT.ok : EXIT_FINDINGS;
};
