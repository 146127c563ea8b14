/**
 * `node:util` parseArgs with the two things a user expects from a command line and it lacks: an unknown option
 * gets a "did you mean" naming the closest real one, and an unambiguous prefix of a long option is that option
 * (`--verb` is `--verbose`), as in Airut's argparse CLI (airut-behaviour.md item 41). Every parse error is a
 * `UsageError` (exit 2) that ends with where the options are listed.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { editDistance } from '../../protocol/edit-distance.js';
import { UsageError } from '../errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

export { editDistance };

/** The known option closest to `name` (without dashes), if it is close enough to be a slip rather than another word. */
export function closestOption(name: string, known: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best !== null && bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : null;
}

/** `--pre[=v]` → `--prefixed-option[=v]` when exactly one long option starts with `pre` and none is `pre` itself. */
export function expandPrefixes(args: readonly string[], known: readonly string[]): string[] {
  return args.map((arg) => {
    const m = /^--([^=]+)(=.*)?$/s.exec(arg);
    if (!m || known.includes(m[1]!)) return arg;
    const matches = known.filter((name) => name.startsWith(m[1]!));
    return matches.length === 1 ? `--${matches[0]}${m[2] ?? ''}` : arg;
  });
}

function optionName(message: string): string | null {
  return /'(-{1,2}[^'=]+)/.exec(message)?.[1] ?? null;
}

export function parseFlags<T extends ParseArgsConfig & { args: string[]; options: Options }>(
  config: T,
  command: string,
): ReturnType<typeof parseArgs<T>> {
  const known = Object.keys(config.options);
  const helpHint = `run 'airlock ${command} --help' for its options`;
  try {
    return parseArgs({ ...config, args: expandPrefixes(config.args, known) });
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS')) throw e;
    const message = (e as Error).message;
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const given = optionName(message) ?? '';
      const prefix = /^--([^=]+)/.exec(given)?.[1];
      const ambiguous = prefix === undefined ? [] : known.filter((name) => name.startsWith(prefix));
      if (ambiguous.length > 1) {
        throw new UsageError(
          `option '${given}' is ambiguous: ${ambiguous.map((n) => `--${n}`).join(', ')}; ${helpHint}`,
        );
      }
      const suggestion = closestOption(given.replace(/^-+/, ''), known);
      throw new UsageError(
        `unknown option '${given}'${suggestion ? ` (did you mean --${suggestion}?)` : ''}; ${helpHint}`,
      );
    }
    throw new UsageError(`${message.replace(/\.$/, '')}; ${helpHint}`);
  }
}
