/**
 * Start-up overhead of `airlock run -- true` against a bare `podman run --rm <same image> true`, all with warm
 * images, interleaved in the same session so machine noise hits each alike: the bare baseline, airlock with
 * `network_sandbox: false` (the container half only) and airlock with the network sandbox (proxy container,
 * per-run networks and CA — the product as shipped). Prints a table and writes it into the
 * "Startup" section of docs/benchmarks.md (other sections are left alone).
 *
 *   npm run bench:startup [-- --runs N --engine podman|docker]
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { readHostLimits } from '../src/cli/engine/host-limits.js';
import { ensureTestImage, TEST_IMAGE } from '../test/helpers/images.js';

const ROOT = resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: { runs: { type: 'string', default: '10' }, engine: { type: 'string', default: 'podman' } },
});
const RUNS = Number(values.runs);
const ENGINE = values.engine === 'docker' ? 'docker' : 'podman';

function timed(argv: string[], cwd: string): Promise<number> {
  return new Promise((done, fail) => {
    const started = process.hrtime.bigint();
    const child = spawn(argv[0]!, argv.slice(1), { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => {
      if (code !== 0) fail(new Error(`${argv.join(' ')} exited ${code}: ${err}`));
      else done(Number(process.hrtime.bigint() - started) / 1e6);
    });
  });
}

/** The shipped CLI, as users run it (built by `npm run build`). */
function airlockEntry(): { argv: string[]; label: string } {
  const built = join(ROOT, 'dist/cli/bin.js');
  if (!existsSync(built)) throw new Error('dist/cli/bin.js is missing: run `npm run build` first');
  return { argv: [process.execPath, built], label: 'dist/cli/bin.js' };
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const median = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return { median, mean: xs.reduce((a, b) => a + b, 0) / xs.length, min: s[0]!, max: s[s.length - 1]! };
};

await ensureTestImage(ENGINE);
const work = await mkdtemp(join(tmpdir(), 'airlock-bench-ws-'));
await mkdir(join(work, '.airlock'));
await writeFile(join(work, '.airlock/sandbox.yaml'), `network_sandbox: false\nimage: ${TEST_IMAGE}\n`);
const sandboxed = await mkdtemp(join(tmpdir(), 'airlock-bench-net-'));
await mkdir(join(sandboxed, '.airlock'));
await writeFile(join(sandboxed, '.airlock/sandbox.yaml'), `image: ${TEST_IMAGE}\n`);
const entry = airlockEntry();
const airlockArgv = [...entry.argv, 'run', '--engine', ENGINE, '--', 'true'];
// The engine's default ulimits exceed this kind of host's hard limits (see src/cli/engine/host-limits.ts), so the
// bare baseline gets the same two --ulimit flags airlock passes; it is otherwise a plain `run --rm`.
const limits = readHostLimits();
const ulimits = [`--ulimit=nofile=${limits.nofile}:${limits.nofile}`, `--ulimit=nproc=${limits.nproc}:${limits.nproc}`];
const bareArgv = [ENGINE, 'run', '--rm', ...ulimits, TEST_IMAGE, 'true'];

await timed(bareArgv, work);
await timed(airlockArgv, work);
await timed(airlockArgv, sandboxed);
const bare: number[] = [];
const airlock: number[] = [];
const network: number[] = [];
for (let i = 0; i < RUNS; i++) {
  bare.push(await timed(bareArgv, work));
  airlock.push(await timed(airlockArgv, work));
  network.push(await timed(airlockArgv, sandboxed));
}
const b = stats(bare);
const a = stats(airlock);
const n = stats(network);
const ms = (x: number) => x.toFixed(0);
const table = [
  `| command (${RUNS} runs each, interleaved) | median ms | mean ms | min ms | max ms |`,
  '| --- | ---: | ---: | ---: | ---: |',
  `| \`${ENGINE} run --rm --ulimit … <image> true\` | ${ms(b.median)} | ${ms(b.mean)} | ${ms(b.min)} | ${ms(b.max)} |`,
  `| \`airlock run -- true\`, \`network_sandbox: false\` | ${ms(a.median)} | ${ms(a.mean)} | ${ms(a.min)} | ${ms(a.max)} |`,
  `| \`airlock run -- true\`, network sandbox (default) | ${ms(n.median)} | ${ms(n.mean)} | ${ms(n.min)} | ${ms(n.max)} |`,
  '',
  `Ratio of medians, container half only (airlock / bare): **${(a.median / b.median).toFixed(2)}×**, overhead ${ms(a.median - b.median)} ms.`,
  '',
  `Ratio of medians, with the network sandbox (airlock / bare): **${(n.median / b.median).toFixed(2)}×**, added time ${ms(n.median - b.median)} ms (target: under 1500 ms).`,
].join('\n');
process.stdout.write(`${table}\n`);

const section = `## Startup

\`npm run bench:startup\` — ${new Date().toISOString().slice(0, 10)}, ${ENGINE}, ${cpus().length} CPUs, Node ${process.version},
image \`${TEST_IMAGE}\` (warm), airlock entry: ${entry.label}. Load average at the start: ${loadavg()[0]!.toFixed(2)}.

${table}

With the network sandbox, airlock also creates two networks, starts the proxy container (Node start-up in the
container, listeners bound, ready line) and removes it all afterwards; network creation, the per-run CA and the
image check run side by side.

airlock's extra work per run: Node start-up and config loading, the orphan sweep (\`ps\` + \`network ls\` with a
label filter, concurrent with the rest), \`image inspect\`, the hardened \`run\` itself, then \`rm\` because the
container is not started with \`--rm\` (and \`container inspect\` only after the ambiguous codes 125-127 and 137).
`;
const docPath = join(ROOT, 'docs/benchmarks.md');
const doc = existsSync(docPath) ? readFileSync(docPath, 'utf8') : '# Benchmarks\n';
const start = doc.search(/^## Startup\s*$/m);
let updated: string;
if (start < 0) {
  updated = `${doc.trimEnd()}\n\n${section}`;
} else {
  const rest = doc.slice(start + 1);
  const next = rest.search(/^## /m);
  updated = doc.slice(0, start) + section + (next < 0 ? '' : `\n${rest.slice(next)}`);
}
writeFileSync(docPath, updated.endsWith('\n') ? updated : `${updated}\n`);
process.stdout.write(`wrote the Startup section of ${docPath}\n`);
