/**
 * `<engine> build` with feedback and without surprises:
 *
 * - the images the Dockerfile builds on are made present first (an explicit pull with a clear error, never for a
 *   `localhost/` reference), then the build runs with `--pull=never`: it never retries a registry for seconds and a
 *   typo fails at once;
 * - progress: on a terminal one redrawn line (step n/m and elapsed time), in a CI log one line per step, with
 *   `--verbose` the engine's own output;
 * - failure: an `EngineError` with one line saying what went wrong and the tail of the build log, with Podman's
 *   internal struct dumps (`&imagebuilder.Step{…}`) cut out;
 * - Podman 4.3 leaves its build ("working") container in storage when a build is interrupted: each external `FROM`
 *   is built from a per-build alias tag, so those containers carry this build's name and are removed afterwards.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callEngine, lastLines, type Engine } from '../engine/engine.js';
import { EngineError } from '../errors.js';
import type { Logger } from '../session/log.js';
import { dockerfileBases, replaceFromRefs, type BaseImage } from './dockerfile.js';

export interface BuildStep {
  step: number;
  total: number;
  /** The instruction being run, when the engine prints it (`RUN apt-get update`). */
  instruction?: string;
}

/** Step markers of Podman/Buildah (`STEP 2/5: RUN …`), Docker's classic builder (`Step 2/5 : RUN …`) and BuildKit (`#7 [2/5] RUN …`). */
export function parseBuildStep(line: string): BuildStep | null {
  const m =
    /^(?:STEP|Step) (\d+)\/(\d+)\s?:\s*(.*)$/.exec(line) ?? /^#\d+ \[(?:[\w.-]+ )?(\d+)\/(\d+)\]\s*(.*)$/.exec(line);
  if (!m) return null;
  const step: BuildStep = { step: Number(m[1]), total: Number(m[2]) };
  const instruction = m[3]?.trim();
  if (instruction) step.instruction = instruction;
  return step;
}

export interface BuildRequest {
  engine: Engine;
  tag: string;
  dockerfile: string;
  contextDir: string;
  noCache: boolean;
  log: Logger;
  /** Put on the image (which repository's Dockerfile built it, for pruning). */
  labels?: Record<string, string>;
  /** Aborting kills the engine's build process (Ctrl-C during a long build). */
  signal?: AbortSignal;
}

const TAIL_LINES = 30;

/** Go struct literals Podman prints for some errors (`&imagebuilder.Step{Env:[]string{…}, …}`), up to line end. */
const STRUCT_DUMP = /\s*&[A-Za-z_]\w*\.[A-Z]\w*\{.*$/;

/**
 * The build log's tail without Podman's struct dumps, and one line saying what failed: the engine's last
 * `Error:` line (Podman) or the last line (Docker prints its failure last).
 */
export function summarizeBuildFailure(lines: string[]): { headline: string; tail: string[] } {
  const tail = lines
    .filter((line) => !/UNHANDLED LOGLEVEL\) &/.test(line))
    .map((line) => line.replace(STRUCT_DUMP, '').trimEnd())
    .filter((line) => line.trim() !== '');
  const error = [...tail].reverse().find((line) => /^(?:Error|ERROR|error):\s/.test(line));
  const headline = (error ?? tail[tail.length - 1] ?? 'no output').replace(/^(?:Error|ERROR|error):\s*/, '');
  return { headline, tail };
}

function shortTag(tag: string): string {
  const colon = tag.lastIndexOf(':');
  return colon > 0 && tag.length - colon > 13 ? `${tag.slice(0, colon + 13)}…` : tag;
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** Makes every resolved base image present locally; throws a clear EngineError for one that cannot be. */
async function ensureBaseImages(request: BuildRequest, images: BaseImage[]): Promise<void> {
  const { engine, log } = request;
  const seen = new Set<string>();
  for (const image of images) {
    if (seen.has(image.ref)) continue;
    seen.add(image.ref);
    const present = await callEngine(engine, ['image', 'inspect', '--format', '{{.Id}}', image.ref], {
      signal: request.signal,
    });
    if (present.code === 0) continue;
    const where = `${request.dockerfile}:${image.line} (${image.instruction})`;
    if (/^localhost\//i.test(image.ref)) {
      throw new EngineError(
        `base image ${image.ref} named at ${where} is not present locally, and localhost/ images come from no ` +
          `registry: build or \`${engine.kind} load\` it first, or fix the reference`,
      );
    }
    log.progress(`pulling base image ${image.ref} (${where}): it is not present locally`);
    const pulled = await callEngine(engine, ['pull', image.ref], { signal: request.signal });
    if (pulled.code !== 0) {
      throw new EngineError(
        `base image ${image.ref} named at ${where} is not present locally and could not be pulled: ` +
          `${lastLines(pulled.stderr.replace(STRUCT_DUMP, ''), 1).replace(/^Error:\s*/, '')}; ` +
          `pull or \`${engine.kind} load\` it yourself, or fix the reference`,
      );
    }
  }
}

interface BuildAliases {
  /** The Dockerfile the engine reads (a rewritten copy when aliases are used). */
  file: string;
  /** Working containers of this build are named `<prefix>-working-container[-N]`. */
  containerPrefix: string | null;
  /** Build output as the user wrote the Dockerfile: each alias replaced by the reference it stands for. */
  display(line: string): string;
  release(): Promise<void>;
}

/**
 * Podman names a build container after its base image; tagging each external FROM image under a name unique to this
 * build (and building from a copy of the Dockerfile that uses those names) makes its leftovers findable.
 */
async function aliasBaseImages(request: BuildRequest, source: string, froms: BaseImage[]): Promise<BuildAliases> {
  const { engine } = request;
  const withSpan = froms.filter((f): f is BaseImage & { span: [number, number] } => f.span !== undefined);
  if (engine.kind !== 'podman' || withSpan.length === 0) {
    return { file: request.dockerfile, containerPrefix: null, display: (l) => l, release: () => Promise.resolve() };
  }
  const name = `airlock-build-${process.pid}-${randomBytes(4).toString('hex')}`;
  const refs = [...new Set(withSpan.map((f) => f.ref))];
  const aliasOf = new Map(refs.map((ref, i) => [ref, `localhost/${name}:${i}`]));
  const dir = await mkdtemp(join(tmpdir(), `${name}-`));
  const tagged: string[] = [];
  const release = async (): Promise<void> => {
    // `untag IMAGE NAME` removes that one name; `untag IMAGE` alone would remove every tag the image has.
    for (const alias of tagged) await callEngine(engine, ['untag', alias, alias]);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (const [ref, alias] of aliasOf) {
      const r = await callEngine(engine, ['tag', ref, alias]);
      if (r.code !== 0) throw new EngineError(`tagging ${ref} for the build failed: ${lastLines(r.stderr, 1)}`);
      tagged.push(alias);
    }
    const file = join(dir, 'Dockerfile');
    await writeFile(
      file,
      replaceFromRefs(
        source,
        withSpan.map((f) => ({ span: f.span, ref: aliasOf.get(f.ref)! })),
      ),
    );
    const display = (line: string): string =>
      line.includes(name) ? [...aliasOf].reduce((l, [ref, alias]) => l.split(alias).join(ref), line) : line;
    return { file, containerPrefix: name, display, release };
  } catch (e) {
    await release();
    throw e;
  }
}

/** Removes the build containers a build left in Podman's storage (an interrupted or failed build). */
async function removeWorkingContainers(engine: Engine, prefix: string, log: Logger): Promise<void> {
  const listed = await callEngine(engine, ['ps', '--all', '--external', '--format', '{{.Names}}']);
  const ours = listed.stdout
    .split('\n')
    .map((n) => n.trim())
    .filter((n) => n === `${prefix}-working-container` || n.startsWith(`${prefix}-working-container-`));
  if (ours.length === 0) return;
  const removed = await callEngine(engine, ['rm', '--force', ...ours]);
  if (removed.code !== 0)
    log.warn(`could not remove the build's containers ${ours.join(', ')}: ${lastLines(removed.stderr, 2)}`);
  else log.debug(`removed the interrupted build's containers: ${ours.join(', ')}`);
}

export async function buildImage(request: BuildRequest): Promise<void> {
  const { engine, log } = request;
  const source = await readFile(request.dockerfile, 'utf8');
  const bases = dockerfileBases(source);
  for (const u of bases.unresolved) {
    log.debug(`${request.dockerfile}:${u.line}: ${u.text} depends on a build argument; the engine resolves it`);
  }
  await ensureBaseImages(request, bases.images);
  const aliases = await aliasBaseImages(
    request,
    source,
    bases.images.filter((b) => b.instruction === 'FROM'),
  );

  // --force-rm: Docker's classic builder otherwise keeps the container of a failed step forever.
  const args = ['build', '--force-rm'];
  // Bases are present by now; Docker's build has no such flag, and finds them locally the same way.
  if (engine.kind === 'podman') args.push('--pull=never');
  for (const [key, value] of Object.entries(request.labels ?? {}).sort()) args.push('--label', `${key}=${value}`);
  args.push('--tag', request.tag, '--file', aliases.file);
  if (request.noCache) args.push('--no-cache');
  args.push(request.contextDir);
  log.info(`building ${request.tag}${request.noCache ? ' (no cache)' : ''}`);
  log.debug(`${engine.kind} ${args.join(' ')}`);

  const started = Date.now();
  const seconds = (): number => Math.round((Date.now() - started) / 1000);
  let step: BuildStep | null = null;
  let partial = '';
  const recent: string[] = [];
  const draw = (): void => {
    const where = step ? `step ${step.step}/${step.total}` : 'starting';
    log.terminal.write(`\r\x1b[Kairlock: building image: ${where} (${seconds()}s)`);
  };
  const quiet = log.level !== 'info' && log.level !== 'debug';
  const redraw = log.interactive && quiet;
  // Without a terminal (a CI log) a redrawn line is useless: one line per step says the same.
  const stepLines = !log.interactive && quiet;
  const timer = redraw ? setInterval(draw, 1000) : null;
  if (redraw) draw();
  let succeeded = false;
  try {
    const result = await callEngine(engine, args, {
      signal: request.signal,
      onOutput: (chunk) => {
        log.stream(chunk);
        partial += chunk.toString('utf8');
        const lines = partial.split('\n');
        partial = lines.pop() ?? '';
        for (const raw of lines) {
          const line = aliases.display(raw);
          recent.push(line);
          if (recent.length > TAIL_LINES * 2) recent.shift();
          const found = parseBuildStep(line);
          if (!found) continue;
          step = found;
          if (redraw) draw();
          if (stepLines) {
            const what = found.instruction ? `: ${clip(found.instruction.replace(STRUCT_DUMP, ''), 100)}` : '';
            log.progress(`building ${shortTag(request.tag)}: step ${found.step}/${found.total} (${seconds()}s)${what}`);
          }
        }
        if (partial.length > 65536) partial = '';
      },
    });
    if (result.code !== 0) {
      if (partial) recent.push(aliases.display(partial));
      const { headline, tail } = summarizeBuildFailure(recent);
      throw new EngineError(
        `image build failed for ${request.tag} (${engine.kind} exited ${result.code}): ${headline}\n` +
          `last lines of the build log:\n${tail.slice(-TAIL_LINES).join('\n')}`,
      );
    }
    succeeded = true;
  } finally {
    if (timer) clearInterval(timer);
    if (redraw) log.terminal.write('\r\x1b[K');
    if (!succeeded && aliases.containerPrefix) await removeWorkingContainers(engine, aliases.containerPrefix, log);
    await aliases.release();
  }
  if (stepLines) log.progress(`built ${shortTag(request.tag)} in ${seconds()}s`);
  else log.info(`built ${request.tag} in ${seconds()}s`);
}
