/**
 * `airlock allowlist suggest LOG.jsonl… [--merge EXISTING.yaml] [--output FILE]`: a ready network-allowlist.yaml
 * learned from JSONL network logs (an `--audit` run's above all). See docs/audit.md.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { suggestAllowlist } from '../../protocol/allowlist-suggest.js';
import { loadPolicy } from '../config/load.js';
import { evidenceFromLog, renderSuggestion, type LogEvidence } from '../config/suggestion.js';
import { ConfigError, EXIT, UsageError } from '../errors.js';
import type { Command } from './types.js';

const USAGE = `usage: airlock allowlist suggest LOG.jsonl... [--merge EXISTING.yaml] [--output FILE]

  LOG.jsonl            JSONL network logs (airlock run --network-log-json, or --audit)
  --merge FILE         keep FILE's entries and comments; add only what it does not allow yet
  --output FILE        write the allowlist to FILE instead of stdout
`;

export const run: Command = async (argv, ctx) => {
  const [sub, ...rest] = argv;
  if (sub === '-h' || sub === '--help') {
    ctx.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (sub !== 'suggest')
    throw new UsageError(sub === undefined ? USAGE : `unknown allowlist command '${sub}'\n${USAGE}`);
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    strict: true,
    options: {
      merge: { type: 'string' },
      output: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    ctx.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (positionals.length === 0) throw new UsageError(`name at least one JSONL network log\n\n${USAGE}`);

  const evidence: LogEvidence = { requests: [], unreadable: 0, skipped: 0 };
  for (const log of positionals) {
    const file = path.resolve(ctx.cwd, log);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new UsageError(`${file}: cannot read the network log (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    evidenceFromLog(text, evidence);
  }
  if (evidence.unreadable > 0) {
    ctx.stderr.write(`airlock: warning: ${evidence.unreadable} log lines were not JSON records and were ignored\n`);
  }

  let existingText: string | undefined;
  let existing;
  if (values.merge !== undefined) {
    const file = path.resolve(ctx.cwd, values.merge);
    // Validated (and linted) like any allowlist: merging into a broken file would hide its problems.
    const policy = await loadPolicy({ cwd: ctx.cwd, allowlist: file, allowlistOnly: true }, ctx.env);
    for (const warning of policy.warnings) ctx.stderr.write(`airlock: warning: ${warning}\n`);
    existing = policy.allowlist;
    existingText = await readFile(file, 'utf8');
  }

  const suggestion = suggestAllowlist(evidence.requests, existing);
  const yaml = renderSuggestion(suggestion, existingText);
  const counted = evidence.requests.length;
  const summary =
    `${counted} request${counted === 1 ? '' : 's'} → ${suggestion.entries.length} new entr${suggestion.entries.length === 1 ? 'y' : 'ies'}` +
    (existing ? ` (${suggestion.alreadyAllowed} already allowed)` : '') +
    (evidence.skipped === 0
      ? ''
      : evidence.skipped === 1
        ? '; 1 refusal no entry can fix was left out'
        : `; ${evidence.skipped} refusals no entry can fix were left out`);
  if (values.output !== undefined) {
    const out = path.resolve(ctx.cwd, values.output);
    try {
      await writeFile(out, yaml);
    } catch (err) {
      throw new ConfigError(`${out}: cannot write the allowlist (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    ctx.stderr.write(`airlock: ${summary}; wrote ${out}\n`);
  } else {
    ctx.stdout.write(yaml);
    ctx.stderr.write(`airlock: ${summary}\n`);
  }
  return EXIT.ok;
};
