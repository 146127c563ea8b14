/**
 * `<engine> build` with feedback: on a terminal a one-line progress indicator (step n/m and elapsed time), with
 * `--verbose` the engine's own output, and on failure an `EngineError` carrying the tail of the build log.
 */
import { callEngine, type Engine } from '../engine/engine.js';
import { EngineError } from '../errors.js';
import type { Logger } from '../session/log.js';

export interface BuildStep {
  step: number;
  total: number;
}

/** Step markers of Podman/Buildah (`STEP 2/5: RUN …`), Docker's classic builder (`Step 2/5 : RUN …`) and BuildKit (`#7 [2/5] RUN …`). */
export function parseBuildStep(line: string): BuildStep | null {
  const m = /^(?:STEP|Step) (\d+)\/(\d+)\s?:/.exec(line) ?? /^#\d+ \[(?:[\w.-]+ )?(\d+)\/(\d+)\]/.exec(line);
  if (!m) return null;
  return { step: Number(m[1]), total: Number(m[2]) };
}

export interface BuildRequest {
  engine: Engine;
  tag: string;
  dockerfile: string;
  contextDir: string;
  noCache: boolean;
  log: Logger;
  /** Aborting kills the engine's build process (Ctrl-C during a long build). */
  signal?: AbortSignal;
}

const TAIL_LINES = 30;

export async function buildImage(request: BuildRequest): Promise<void> {
  const { engine, log } = request;
  // --force-rm: Docker's classic builder otherwise keeps the container of a failed step forever.
  const args = ['build', '--force-rm', '--tag', request.tag, '--file', request.dockerfile];
  if (request.noCache) args.push('--no-cache');
  args.push(request.contextDir);
  log.info(`building ${request.tag}${request.noCache ? ' (no cache)' : ''}`);
  log.debug(`${engine.kind} ${args.join(' ')}`);

  const started = Date.now();
  let step: BuildStep | null = null;
  let partial = '';
  const recent: string[] = [];
  const draw = (): void => {
    const seconds = Math.round((Date.now() - started) / 1000);
    const where = step ? `step ${step.step}/${step.total}` : 'starting';
    log.terminal.write(`\r\x1b[Kairlock: building image: ${where} (${seconds}s)`);
  };
  const progress = log.interactive && log.level !== 'info' && log.level !== 'debug';
  const timer = progress ? setInterval(draw, 1000) : null;
  if (progress) draw();
  try {
    const result = await callEngine(engine, args, {
      signal: request.signal,
      onOutput: (chunk) => {
        log.stream(chunk);
        partial += chunk.toString('utf8');
        const lines = partial.split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          recent.push(line);
          if (recent.length > TAIL_LINES) recent.shift();
          const found = parseBuildStep(line);
          if (found) {
            step = found;
            if (progress) draw();
          }
        }
        if (partial.length > 65536) partial = '';
      },
    });
    if (result.code !== 0) {
      if (partial) recent.push(partial);
      throw new EngineError(
        `image build failed for ${request.tag} (${engine.kind} exited ${result.code}); last lines of the build log:\n` +
          recent.slice(-TAIL_LINES).join('\n'),
      );
    }
  } finally {
    if (timer) clearInterval(timer);
    if (progress) log.terminal.write('\r\x1b[K');
  }
  log.info(`built ${request.tag} in ${Math.round((Date.now() - started) / 1000)}s`);
}
