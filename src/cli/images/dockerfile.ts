/**
 * The images a Dockerfile builds on, read before the build: every `FROM` that is not an earlier stage or `scratch`,
 * and every `COPY --from=`/`RUN --mount=…,from=` that names an image. airlock makes each present locally first (an
 * explicit pull, with its own clear error) and then builds with `--pull=never`, so the build itself never talks to a
 * registry. References built from `ARG`s resolve with the global ARGs' defaults; one that still has a variable in
 * it is reported unresolved and left to the engine.
 */

export interface BaseImage {
  /** The image reference, with ARG defaults substituted. */
  ref: string;
  /** 1-based line of the instruction that names it. */
  line: number;
  instruction: 'FROM' | 'COPY --from' | 'RUN --mount';
  /** For a single-line FROM: where the reference stands in the source, so it can be replaced. */
  span?: [start: number, end: number];
}

export interface DockerfileBases {
  images: BaseImage[];
  /** References that still contain a variable after substitution (build args airlock does not pass). */
  unresolved: Array<{ text: string; line: number }>;
}

interface Instruction {
  keyword: string;
  /** The instruction's text after the keyword, continuation lines joined. */
  args: string;
  line: number;
  /** Offset of `args` in the source, when the instruction is on one physical line. */
  argsOffset?: number;
}

/** Logical instructions: continuation lines joined, comment lines dropped, heredoc bodies skipped. */
function instructions(source: string): Instruction[] {
  const lines = source.split('\n');
  let escape = '\\';
  // Parser directives are comments at the very top; only `escape` changes how the rest is read.
  for (const line of lines) {
    const directive = /^#\s*([a-z]+)\s*=\s*(\S+)\s*$/i.exec(line);
    if (!directive) break;
    if (directive[1]!.toLowerCase() === 'escape' && (directive[2] === '`' || directive[2] === '\\'))
      escape = directive[2];
  }
  const out: Instruction[] = [];
  const offsets: number[] = [];
  let offset = 0;
  for (const line of lines) {
    offsets.push(offset);
    offset += line.length + 1;
  }
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i]!.replace(/\r$/, '');
    if (/^\s*(#|$)/.test(first)) continue;
    const start = i;
    let text = first;
    let single = true;
    while (text.trimEnd().endsWith(escape) && i + 1 < lines.length) {
      single = false;
      text = text.trimEnd().slice(0, -1);
      // Comment lines inside a continued instruction are dropped; the instruction goes on after them.
      do i++;
      while (i + 1 < lines.length && /^\s*#/.test(lines[i]!));
      const next = lines[i]!.replace(/\r$/, '');
      if (!/^\s*#/.test(next)) text += ` ${next}`;
    }
    const m = /^(\s*)([A-Za-z]+)(\s+|$)/.exec(text);
    if (!m) continue;
    const instruction: Instruction = { keyword: m[2]!.toUpperCase(), args: text.slice(m[0].length), line: start + 1 };
    if (single) instruction.argsOffset = offsets[start]! + m[0].length;
    out.push(instruction);
    // Heredocs (`RUN <<EOF` … `EOF`): the body is data, not instructions.
    for (const here of text.matchAll(/<<(-?)["']?([A-Za-z_][\w]*)["']?/g)) {
      const strip = here[1] === '-';
      while (i + 1 < lines.length) {
        i++;
        const body = lines[i]!.replace(/\r$/, '');
        if ((strip ? body.trim() : body) === here[2]) break;
      }
    }
  }
  return out;
}

/** `$X`, `${X}`, `${X:-default}`, `${X:+alt}` with the given values; null when a variable has no value. */
function substitute(text: string, args: Map<string, string | undefined>): string | null {
  let unresolved = false;
  const result = text.replace(
    /\$(?:\{([A-Za-z_]\w*)(?::([-+])([^}]*))?\}|([A-Za-z_]\w*))/g,
    (_m, braced, op, word, bare) => {
      const name = (braced ?? bare) as string;
      const value = args.get(name);
      if (op === '-') return value === undefined || value === '' ? (word as string) : value;
      if (op === '+') return value === undefined || value === '' ? '' : (word as string);
      if (value === undefined) unresolved = true;
      return value ?? '';
    },
  );
  return unresolved ? null : result;
}

function unquote(value: string): string {
  const m = /^(["'])(.*)\1$/.exec(value);
  return m ? m[2]! : value;
}

export function dockerfileBases(source: string): DockerfileBases {
  const globalArgs = new Map<string, string | undefined>();
  const stages = new Set<string>();
  const images: BaseImage[] = [];
  const unresolved: DockerfileBases['unresolved'] = [];
  let seenFrom = false;
  const external = (name: string): boolean =>
    name.toLowerCase() !== 'scratch' && !stages.has(name.toLowerCase()) && !/^\d+$/.test(name);

  for (const ins of instructions(source)) {
    if (ins.keyword === 'ARG' && !seenFrom) {
      for (const decl of ins.args.trim().split(/\s+/)) {
        const eq = decl.indexOf('=');
        if (eq < 0) globalArgs.set(decl, undefined);
        else globalArgs.set(decl.slice(0, eq), unquote(decl.slice(eq + 1)));
      }
    } else if (ins.keyword === 'FROM') {
      seenFrom = true;
      const words = [...ins.args.matchAll(/\S+/g)];
      const imageWord = words.find((w) => !w[0].startsWith('--'));
      if (!imageWord) continue;
      const asIndex = words.findIndex((w) => w[0].toLowerCase() === 'as');
      const raw = imageWord[0];
      const ref = substitute(raw, globalArgs);
      if (ref === null) unresolved.push({ text: raw, line: ins.line });
      else if (external(ref)) {
        const image: BaseImage = { ref, line: ins.line, instruction: 'FROM' };
        if (ins.argsOffset !== undefined) {
          image.span = [ins.argsOffset + imageWord.index, ins.argsOffset + imageWord.index + raw.length];
        }
        images.push(image);
      }
      const stage = asIndex > 0 ? words[asIndex + 1]?.[0] : undefined;
      if (stage) stages.add(stage.toLowerCase());
    } else if (ins.keyword === 'COPY' || ins.keyword === 'ADD' || ins.keyword === 'RUN') {
      const from =
        ins.keyword === 'RUN'
          ? [...ins.args.matchAll(/--mount=(\S+)/g)].flatMap((m) => /(?:^|,)from=([^,\s]+)/.exec(m[1]!)?.[1] ?? [])
          : [...ins.args.matchAll(/(?:^|\s)--from=(\S+)/g)].map((m) => unquote(m[1]!));
      for (const name of from) {
        if (name.includes('$')) unresolved.push({ text: name, line: ins.line });
        else if (external(name)) {
          images.push({
            ref: name,
            line: ins.line,
            instruction: ins.keyword === 'RUN' ? 'RUN --mount' : 'COPY --from',
          });
        }
      }
    }
  }
  return { images, unresolved };
}

/** The Dockerfile with each FROM reference in `replacements` (by span) swapped for another reference. */
export function replaceFromRefs(source: string, replacements: Array<{ span: [number, number]; ref: string }>): string {
  let out = source;
  for (const { span, ref } of [...replacements].sort((a, b) => b.span[0] - a.span[0])) {
    out = out.slice(0, span[0]) + ref + out.slice(span[1]);
  }
  return out;
}
