import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import type { CommandContext } from '../../src/cli/commands/types.js';
import { ConfigError, EXIT } from '../../src/cli/errors.js';
import { main, reportError } from '../../src/cli/main.js';

/** The CLI's entry: version and usage, unknown commands, and the one place errors become exit codes. */

function context(): CommandContext & { out: () => string; err: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  return { cwd: '/', env: {}, stdout, stderr, isTTY: false, out: () => out, err: () => err };
}

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

describe('the airlock entry point', { timeout: 30_000 }, () => {
  it("--version prints package.json's version", async () => {
    const ctx = context();
    assert.equal(await main(['--version'], ctx), EXIT.ok);
    assert.equal(ctx.out(), `airlock ${version}\n`);
  });

  it('help names the version; no command is a usage error', async () => {
    const help = context();
    assert.equal(await main(['--help'], help), EXIT.ok);
    assert.match(help.out(), new RegExp(`^airlock ${version.replace(/\./g, '\\.')} — `));
    assert.equal(await main([], context()), EXIT.usage);
  });

  it('an unknown command is a usage error with the usage', async () => {
    const ctx = context();
    assert.equal(await main(['frobnicate'], ctx), EXIT.usage);
    assert.match(ctx.err(), /^airlock: unknown command 'frobnicate'/);
  });

  it('an AirlockError is its message and exit code; anything else is an internal error with a stack', () => {
    const known = context();
    assert.equal(reportError(new ConfigError('sandbox.yaml:1:1: bad'), known), EXIT.airlock);
    assert.equal(known.err(), 'airlock: sandbox.yaml:1:1: bad\n');
    const bug = context();
    assert.equal(reportError(new TypeError('x is undefined'), bug), EXIT.airlock);
    assert.match(bug.err(), /^airlock: internal error: TypeError: x is undefined\n\s+at /);
  });
});
