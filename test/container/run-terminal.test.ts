import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { ENGINE_SUITES, prepareEngine, REPO, sandboxYaml, workspace } from './harness.js';

/**
 * With a terminal, `airlock run -- bash` is interactive: util-linux `script` gives airlock a pseudo-terminal, types
 * into it, and returns airlock's exit code (-e).
 */
function onTerminal(argv: string[], cwd: string, typed: string): Promise<{ code: number | null; output: string }> {
  const quote = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;
  const command = [
    process.execPath,
    '--import',
    join(REPO, 'node_modules/tsx/dist/esm/index.mjs'),
    join(REPO, 'src/cli/bin.ts'),
    ...argv,
  ]
    .map(quote)
    .join(' ');
  return new Promise((done, fail) => {
    const child = spawn('script', ['-eqc', command, '/dev/null'], {
      cwd,
      env: { PATH: process.env.PATH, HOME: process.env.HOME ?? '/root', TERM: 'xterm' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, output }));
    child.stdin.end(typed);
  });
}

for (const { engine, skip } of ENGINE_SUITES) {
  describe(`terminal passthrough on ${engine}`, { skip }, () => {
    before(() => prepareEngine(engine));

    it('gives the command a TTY when airlock has one', async () => {
      const cwd = await workspace(sandboxYaml());
      const r = await onTerminal(['run', '--engine', engine, '--', 'sh', '-c', 'tty; exit 5'], cwd, '');
      assert.equal(r.code, 5, r.output);
      assert.match(r.output, /\/dev\/pts\/\d+/);
    });

    it('runs bash interactively, reading what is typed on the terminal', async () => {
      const cwd = await workspace(sandboxYaml());
      const r = await onTerminal(['run', '--engine', engine, '--', 'bash'], cwd, 'echo typed-$((6*7)); exit 4\n');
      assert.equal(r.code, 4, r.output);
      assert.match(r.output, /typed-42/);
    });
  });
}
