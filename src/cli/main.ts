import { AirlockError, ConfigError, EXIT, UsageError } from './errors.js';
import { closestOption } from './commands/parse-flags.js';
import type { Command, CommandContext } from './commands/types.js';
import { airlockPackage } from './host/package-root.js';

const usage = (
  version: string,
) => `airlock ${version} — run untrusted code in a sandbox whose only network peer is an allowlisting proxy

usage:
  airlock run [options] -- COMMAND [ARGS...]   run COMMAND in the sandbox
  airlock policy check [options] METHOD URL    would the allowlist let this request through?
  airlock config check [options]               validate the policy files and print the resolved configuration
  airlock allowlist suggest LOG.jsonl...       learn an allowlist from network logs (see --audit)
  airlock image hash|save DIR|load DIR         image content hashes and tarballs (CI caches)
  airlock doctor                               check the container engine and this machine
  airlock check-workflow FILE...               check GitHub workflows for sandbox-escaping mistakes
  airlock kube manifests|rbac                  Kubernetes objects of a run, and the runner's Role

Run 'airlock COMMAND --help' for a command's options. Docs: docs/ in the airlock repository.
`;

/** Commands are loaded on demand so that `policy check` does not pay for the engine code. */
const COMMANDS: Readonly<Record<string, () => Promise<{ run: Command }>>> = {
  policy: () => import('./commands/policy.js'),
  config: () => import('./commands/config.js'),
  allowlist: () => import('./commands/allowlist.js'),
  run: () => import('./commands/run.js'),
  image: () => import('./commands/image.js'),
  doctor: () => import('./commands/doctor.js'),
  'check-workflow': () => import('./commands/check-workflow.js'),
  kube: () => import('./commands/kube.js'),
};

export async function main(argv: string[], ctx: CommandContext): Promise<number> {
  const [name, ...rest] = argv;
  try {
    if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
      ctx.stdout.write(usage(airlockPackage().version));
      return name === undefined ? EXIT.usage : EXIT.ok;
    }
    if (name === '--version' || name === 'version') {
      ctx.stdout.write(`airlock ${airlockPackage().version}\n`);
      return EXIT.ok;
    }
    const load = COMMANDS[name];
    if (!load) {
      const suggestion = closestOption(name, Object.keys(COMMANDS));
      throw new UsageError(
        `unknown command '${name}'${suggestion ? ` (did you mean ${suggestion}?)` : ''}\n\n${usage(airlockPackage().version)}`,
      );
    }
    const command = await load();
    return await command.run(rest, ctx);
  } catch (err) {
    return reportError(err, ctx);
  }
}

export function reportError(err: unknown, ctx: CommandContext): number {
  if (err instanceof ConfigError) {
    for (const problem of err.problems) ctx.stderr.write(`airlock: ${problem}\n`);
    for (const warning of err.warnings) ctx.stderr.write(`airlock: warning: ${warning}\n`);
    if (err.problems.length > 1) ctx.stderr.write(`airlock: ${err.problems.length} errors in the policy\n`);
    return err.exitCode;
  }
  if (err instanceof AirlockError) {
    ctx.stderr.write(`airlock: ${err.message}\n`);
    return err.exitCode;
  }
  // node:util parseArgs throws TypeErrors with ERR_PARSE_ARGS_* codes for bad options: that is a usage error.
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
    ctx.stderr.write(`airlock: ${(err as Error).message}\n`);
    return EXIT.usage;
  }
  ctx.stderr.write(`airlock: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return EXIT.airlock;
}
