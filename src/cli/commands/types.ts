import type { Writable } from 'node:stream';

/** What a command gets from the entry point, so commands are testable in-process without touching globals. */
export interface CommandContext {
  cwd: string;
  env: NodeJS.ProcessEnv;
  stdout: Writable;
  stderr: Writable;
  /** Whether airlock itself runs on a terminal (decides TTY passthrough and progress output). */
  isTTY: boolean;
}

/** Every subcommand: parse its own argv (after the subcommand name) and return the exit code. */
export type Command = (argv: string[], ctx: CommandContext) => Promise<number>;
