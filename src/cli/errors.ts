/**
 * The few error classes the CLI throws. Each carries the exit code it maps to; only the entry point (`main.ts`)
 * turns them into a process exit code. Messages never contain secret values.
 */

export const EXIT = {
  ok: 0,
  blocked: 1,
  usage: 2,
  /** `--fail-on-block`: the command succeeded but the proxy blocked at least one request. */
  blockedRequests: 3,
  timeout: 124,
  airlock: 125,
  oom: 137,
} as const;

export class AirlockError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly code: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad command line: exit 2. */
export class UsageError extends AirlockError {
  constructor(message: string) {
    super(message, EXIT.usage, 'usage');
  }
}

/**
 * Invalid or unreadable configuration: exit 125. It may carry several problems (`config check` reports every error
 * in every file at once); each is one `file:line:col: key.path: …` line.
 */
export class ConfigError extends AirlockError {
  readonly problems: readonly string[];
  constructor(
    problems: string | readonly string[],
    /** Linter warnings found on the way, reported beside the errors. */
    readonly warnings: readonly string[] = [],
  ) {
    const list = typeof problems === 'string' ? [problems] : problems;
    super(list.join('\n'), EXIT.airlock, 'config');
    this.problems = list;
  }
}

/** The container engine is missing or failed: exit 125. */
export class EngineError extends AirlockError {
  constructor(message: string) {
    super(message, EXIT.airlock, 'engine');
  }
}

/** airlock's own infrastructure (proxy, network, CA) failed: exit 125. Fail closed. */
export class SandboxError extends AirlockError {
  constructor(message: string) {
    super(message, EXIT.airlock, 'sandbox');
  }
}
