/**
 * SIGINT/SIGTERM while airlock prepares a run (image build, network start-up): nothing runs yet, so the right answer
 * is to abort what is in progress (the build's engine process gets the abort), clean up in the usual `finally`, and
 * exit 128+signal. Once the container starts, `runContainer` handles signals itself (stop with grace).
 */
import { signalNumber } from '../engine/engine.js';
import { SandboxError } from '../errors.js';

export type StopSignal = 'SIGINT' | 'SIGTERM';

export class Interruption {
  readonly #controller = new AbortController();
  readonly #handlers: Array<[StopSignal, () => void]> = [];
  #received: StopSignal | null = null;

  constructor() {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      const handler = (): void => {
        this.#received ??= signal;
        this.#controller.abort(new SandboxError(`interrupted by ${signal}`));
      };
      process.on(signal, handler);
      this.#handlers.push([signal, handler]);
    }
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get received(): StopSignal | null {
    return this.#received;
  }

  /** The exit code for an interrupted run (128 + signal number), or null if no signal arrived. */
  exitCode(): number | null {
    return this.#received === null ? null : 128 + signalNumber(this.#received);
  }

  /** Throws if a signal has arrived, so no further step (above all, starting the container) begins. */
  check(): void {
    this.#controller.signal.throwIfAborted();
  }

  /** Stop listening; the container phase installs its own handlers. */
  dispose(): void {
    for (const [signal, handler] of this.#handlers) process.off(signal, handler);
    this.#handlers.length = 0;
  }
}
