import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { closestOption, editDistance, expandPrefixes, parseFlags } from '../../src/cli/commands/parse-flags.js';
import { run } from '../../src/cli/commands/run.js';
import { UsageError } from '../../src/cli/errors.js';
import { main } from '../../src/cli/main.js';

const RUN_NAMES = ['verbose', 'network-log', 'network-log-json', 'network-log-live', 'timeout', 'engine'];

function ctx() {
  const stderr = new PassThrough();
  let text = '';
  stderr.on('data', (d: Buffer) => (text += d.toString()));
  return { cwd: '/', env: {}, stdout: new PassThrough(), stderr, isTTY: false, text: () => text };
}

describe('command-line slips', { timeout: 10_000 }, () => {
  it('measures slips: a transposition is one edit, unrelated words are far apart', () => {
    assert.equal(editDistance('verbsoe', 'verbose'), 1);
    assert.equal(editDistance('verbos', 'verbose'), 1);
    assert.equal(editDistance('timout', 'timeout'), 1);
    assert.ok(editDistance('banana', 'verbose') > 4);
  });

  it('suggests the closest option only when it is close', () => {
    assert.equal(closestOption('verbos', RUN_NAMES), 'verbose');
    assert.equal(closestOption('Timeuot', RUN_NAMES), 'timeout');
    assert.equal(closestOption('network-logs', RUN_NAMES), 'network-log');
    assert.equal(closestOption('banana', RUN_NAMES), null);
  });

  it("expands an unambiguous prefix like Airut's argparse; an exact name always wins", () => {
    assert.deepEqual(expandPrefixes(['--verb', '--time=60', '--network-log', 'x'], RUN_NAMES), [
      '--verbose',
      '--timeout=60',
      '--network-log',
      'x',
    ]);
    assert.deepEqual(expandPrefixes(['--network-log-j', '--network'], RUN_NAMES), ['--network-log-json', '--network']);
  });

  it('turns every parse error into a usage error with a did-you-mean and where the options are', () => {
    const options = { verbose: { type: 'boolean' }, timeout: { type: 'string' } } as const;
    assert.throws(
      () => parseFlags({ args: ['--verbsoe'], options, strict: true }, 'run'),
      (e: unknown) =>
        e instanceof UsageError &&
        e.message === "unknown option '--verbsoe' (did you mean --verbose?); run 'airlock run --help' for its options",
    );
    assert.throws(
      () => parseFlags({ args: ['--zzzzzz'], options, strict: true }, 'run'),
      /unknown option '--zzzzzz'; run/,
    );
    assert.throws(
      () => parseFlags({ args: ['--verbose=yes'], options, strict: true }, 'run'),
      (e: unknown) => e instanceof UsageError && /does not take an argument/.test(e.message),
    );
    assert.deepEqual(
      { ...parseFlags({ args: ['--verb', '--time', '30'], options, strict: true }, 'run').values },
      {
        verbose: true,
        timeout: '30',
      },
    );
  });

  it('airlock run: an unknown flag gets a did-you-mean; an ambiguous prefix names the candidates', async () => {
    await assert.rejects(run(['--verbsoe', '--', 'true'], ctx()), /did you mean --verbose\?/);
    await assert.rejects(
      run(['--network-log-', '--', 'true'], ctx()),
      /ambiguous: --network-log-json, --network-log-live/,
    );
  });

  it('airlock run true (no --) says to put the command after --', async () => {
    await assert.rejects(
      run(['true'], ctx()),
      (e: unknown) =>
        e instanceof UsageError &&
        e.message ===
          "'true' is not an option of airlock run: put the command after --, as in airlock run [options] -- true",
    );
    await assert.rejects(run(['--verbose', 'npm', 'test'], ctx()), /as in airlock run \[options\] -- npm test$/);
  });

  it('an unknown command gets a did-you-mean too (exit 2)', async () => {
    const c = ctx();
    assert.equal(await main(['rnu', '--', 'true'], c), 2);
    assert.match(c.text(), /unknown command 'rnu' \(did you mean run\?\)/);
  });
});
