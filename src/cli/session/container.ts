/**
 * One sandbox container from start to removal: spawn `<engine> run` (without `--rm`, so the exit state can be
 * inspected for OOM), pass the streams through byte for byte, enforce the timeout by killing the container (not
 * just the client), stop it on SIGINT/SIGTERM (5 s grace, then kill), and remove it on every path.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import type { Writable } from 'node:stream';
import { callEngine, engineEnvironment, signalNumber, type Engine } from '../engine/engine.js';
import { buildRunArgs, type ContainerSpec } from '../engine/run-args.js';
import { EXEC_FAILURE_PREFIX_BYTES, parseExecFailure, type ExecFailure } from './exec-failure.js';
import type { Logger } from './log.js';

import type { StopSignal } from './interruption.js';

export type { StopSignal };

export type ContainerOutcome =
  /** The command ran and exited with `code` (which may be 137 after an OOM kill). */
  | { kind: 'exited'; code: number; oomKilled: boolean }
  /** The engine could not create or start the container (bad image, runtime error); its message is on stderr. */
  | { kind: 'not-started'; code: number }
  /** The container started but its init could not execute the command (not found: 127, not executable: 126). */
  | { kind: 'exec-failed'; command: string; failure: ExecFailure }
  | { kind: 'timeout'; seconds: number }
  | { kind: 'signal'; signal: StopSignal }
  /** The sandbox infrastructure (network session) failed while the command ran. */
  | { kind: 'sandbox-failure'; reason: string };

export interface ContainerRun {
  engine: Engine;
  spec: ContainerSpec;
  /** Container variables; handed to the engine process so the argv carries only names. */
  env: Record<string, string>;
  stdout: Writable;
  stderr: Writable;
  timeoutSeconds?: number;
  failure?: Promise<string>;
  log: Logger;
  /** Grace period between SIGTERM and SIGKILL when stopping on a signal. */
  stopGraceSeconds?: number;
}

/** Exit codes with which `podman run`/`docker run` report their own failure to create or start the container. */
const ENGINE_FAILURE_CODES = new Set([125, 126, 127]);

/** Engines print Go's zero time for a container that never started. */
function neverStarted(startedAt: string): boolean {
  return startedAt.trim() === '' || startedAt.startsWith('0001-01-01');
}

function waitForExit(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
}

function stdioFor(run: ContainerRun): StdioOptions {
  if (run.spec.tty) return 'inherit';
  // A terminal on stdin without -t would make the detached client stop on SIGTTIN; give it EOF instead.
  const stdin = process.stdin.isTTY ? 'ignore' : 'inherit';
  // Inheriting our own descriptor is the most exact passthrough; other sinks (tests, the Action) get a pipe. stderr is
  // always a pipe: its first bytes tell a command the init could not execute (exec-failure.ts), and without -t the
  // command's stderr is a pipe either way, so the command cannot tell the difference.
  const stdout = run.stdout === process.stdout ? 'inherit' : 'pipe';
  return [stdin, stdout, 'pipe'];
}

export async function runContainer(run: ContainerRun): Promise<ContainerOutcome> {
  const { engine, spec, log } = run;
  const args = buildRunArgs(spec);
  log.debug(`${engine.kind} ${args.join(' ')}`);
  const grace = run.stopGraceSeconds ?? 5;

  let timedOut = false;
  let stoppedBy: StopSignal | null = null;
  let failureReason: string | null = null;
  let timer: NodeJS.Timeout | null = null;
  const handlers: Array<[StopSignal, () => void]> = [];

  const child = spawn(engine.binary, args, {
    env: engineEnvironment(run.env),
    stdio: stdioFor(run),
    // Without a TTY the client gets its own process group, so a terminal's Ctrl-C reaches only airlock, which
    // stops the container itself; with a TTY the client must stay in the foreground group to read the terminal.
    detached: !spec.tty,
  });
  const exited = waitForExit(child);
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  child.stdout?.pipe(run.stdout, { end: false });
  child.stderr?.pipe(run.stderr, { end: false });
  let stderrStart = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    if (stderrStart.length < EXEC_FAILURE_PREFIX_BYTES) {
      stderrStart += chunk.toString('latin1').slice(0, EXEC_FAILURE_PREFIX_BYTES - stderrStart.length);
    }
  });

  const killContainer = async (): Promise<void> => {
    await callEngine(engine, ['kill', spec.name]);
  };
  /** If the client outlives the container (or never created it), stop waiting for it. */
  const reapClient = (afterMs: number): void => {
    setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }, afterMs).unref();
  };

  try {
    if (run.timeoutSeconds !== undefined) {
      timer = setTimeout(() => {
        timedOut = true;
        log.info(`timeout of ${run.timeoutSeconds}s reached: killing the container`);
        void killContainer().then(() => reapClient(5000));
      }, run.timeoutSeconds * 1000);
    }
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const handler = (): void => {
        if (stoppedBy !== null) {
          void killContainer();
          return;
        }
        stoppedBy = signal;
        log.info(`${signal} received: stopping the container (${grace}s grace)`);
        void callEngine(engine, ['stop', '--time', String(grace), spec.name]).then(() => reapClient(2000));
      };
      process.on(signal, handler);
      handlers.push([signal, handler]);
    }
    void run.failure?.then((reason) => {
      // Stopping on a signal may take the proxy down with it; that is the stop, not a failure to report.
      if (stoppedBy !== null) return;
      failureReason = reason;
      log.error(`sandbox failure: ${reason}; killing the container`);
      void killContainer().then(() => reapClient(5000));
    });

    const first = await Promise.race([exited, spawnError]);
    if (first instanceof Error) {
      return { kind: 'not-started', code: 125 };
    }
    const { code, signal } = first;
    if (timer) clearTimeout(timer);

    if (stoppedBy !== null) return { kind: 'signal', signal: stoppedBy };
    if (timedOut) return { kind: 'timeout', seconds: run.timeoutSeconds ?? 0 };
    if (failureReason !== null) return { kind: 'sandbox-failure', reason: failureReason };
    const clientCode = code ?? 128 + signalNumber(signal);
    const execFailure = code === null ? null : parseExecFailure(code, stderrStart);
    if (execFailure) return { kind: 'exec-failed', command: spec.command[0] ?? '', failure: execFailure };
    // Only these codes are ambiguous: the engine's own failures (125-127, which a command may also return) and 137
    // (OOM or another SIGKILL). Anything else is the command's code, relayed by the client; skip the inspect call.
    if (code !== null && !ENGINE_FAILURE_CODES.has(code) && code !== 137) {
      return { kind: 'exited', code, oomKilled: false };
    }
    const state = await callEngine(engine, [
      'container',
      'inspect',
      '--format',
      '{{.State.OOMKilled}}|{{.State.ExitCode}}|{{.State.StartedAt}}',
      spec.name,
    ]);
    if (state.code !== 0) return { kind: 'not-started', code: clientCode };
    const [oom, exitText, startedAt] = state.stdout.trim().split('|');
    if (neverStarted(startedAt ?? '')) return { kind: 'not-started', code: clientCode };
    const containerCode = Number(exitText);
    return {
      kind: 'exited',
      // The client relays the command's code; only if the client itself died does the container's record decide.
      code: code !== null || !Number.isInteger(containerCode) ? clientCode : containerCode,
      oomKilled: oom === 'true',
    };
  } finally {
    if (timer) clearTimeout(timer);
    for (const [signal, handler] of handlers) process.off(signal, handler);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await Promise.race([exited, spawnError]);
    const removed = await callEngine(engine, ['rm', '--force', spec.name]);
    if (removed.code !== 0 && !/no such|not found/i.test(removed.stderr)) {
      log.warn(`could not remove container ${spec.name}: ${removed.stderr.trim()}`);
    }
  }
}
