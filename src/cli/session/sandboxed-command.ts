/**
 * What every backend shares about the sandboxed command: its environment, and what its outcome means as airlock's
 * exit code — the same whether it ran in a Podman/Docker container (commands/run.ts) or a Kubernetes pod
 * (commands/kube.ts).
 */
import { signalNumber } from '../engine/engine.js';
import { EXIT } from '../errors.js';
import type { ContainerOutcome } from './container.js';
import { describeExecFailure } from './exec-failure.js';
import type { Logger } from './log.js';

/**
 * Variables for the container, later wins: `env`, `pass_env` (only those set on the host), surrogates, network, and
 * `IS_SANDBOX=1` last, as Airut's entrypoint exports it after everything else (tools check it to know they are
 * sandboxed).
 */
export function containerEnvironment(
  env: Record<string, string>,
  passEnv: string[],
  host: NodeJS.ProcessEnv,
  surrogates: Record<string, string>,
  network: Record<string, string>,
): Record<string, string> {
  const merged: Record<string, string> = { ...env };
  for (const name of passEnv) {
    const value = host[name];
    if (value !== undefined) merged[name] = value;
  }
  return { ...merged, ...surrogates, ...network, IS_SANDBOX: '1' };
}

export function exitCodeFor(outcome: ContainerOutcome, memoryLimited: boolean, log: Logger): number {
  switch (outcome.kind) {
    case 'exited':
      if (outcome.code === EXIT.oom && (outcome.oomKilled || memoryLimited)) {
        log.warn(
          `the command was killed (exit 137)${outcome.oomKilled ? ' because it ran out of memory' : ', most likely out of memory'}` +
            ': raise resource_limits.memory in sandbox.yaml',
        );
      }
      return outcome.code;
    case 'not-started':
      log.error(
        `the container engine could not start the container (engine exit ${outcome.code}); see its message above`,
      );
      return EXIT.airlock;
    case 'exec-failed':
      log.error(describeExecFailure(outcome.command, outcome.failure));
      return outcome.failure.code;
    case 'timeout':
      log.error(`the command timed out after ${outcome.seconds}s; the container was killed`);
      return EXIT.timeout;
    case 'signal':
      return 128 + signalNumber(outcome.signal);
    case 'sandbox-failure':
      log.error(`sandbox infrastructure failed: ${outcome.reason}`);
      return EXIT.airlock;
  }
}
