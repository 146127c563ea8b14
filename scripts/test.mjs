// Runs test suites with node's test runner, each file under a time limit, so a regression that hangs fails its
// file instead of hanging CI. Node 20 applies --test-timeout to each test *file* (from when the file starts), which
// is what the limits below are: a file that needs more is too slow for its suite.
//
//   node scripts/test.mjs fast                 unit + integration without the load test (the inner loop)
//   node scripts/test.mjs unit integration load container escape    (npm test)
//
// Every suite runs even when an earlier one failed; the exit code is 1 if any failed.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const LOAD_TEST = 'test/integration/proxy-load.test.ts';

const files = (dir) =>
  readdirSync(path.join(root, dir))
    .filter((f) => f.endsWith('.test.ts'))
    .sort()
    .map((f) => `${dir}/${f}`);

const MINUTE = 60_000;
const SUITES = {
  unit: { files: () => files('test/unit'), timeoutMs: 2 * MINUTE, serial: false },
  integration: {
    files: () => files('test/integration').filter((f) => f !== LOAD_TEST),
    timeoutMs: 5 * MINUTE,
    serial: true,
  },
  load: { files: () => [LOAD_TEST], timeoutMs: 20 * MINUTE, serial: true },
  container: { files: () => files('test/container'), timeoutMs: 30 * MINUTE, serial: true },
  escape: { files: () => files('test/escape'), timeoutMs: 30 * MINUTE, serial: true },
};
const ALIASES = { fast: ['unit', 'integration'] };

const requested = process.argv.slice(2).flatMap((name) => ALIASES[name] ?? [name]);
const unknown = requested.filter((name) => !(name in SUITES));
if (requested.length === 0 || unknown.length > 0) {
  console.error(
    `usage: node scripts/test.mjs SUITE... (${[...Object.keys(SUITES), ...Object.keys(ALIASES)].join(', ')})`,
  );
  process.exit(2);
}

const failed = [];
for (const name of requested) {
  const suite = SUITES[name];
  console.error(`\n== ${name}: ${suite.files().length} files, at most ${suite.timeoutMs / MINUTE} min each`);
  const result = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '--test',
      '--test-reporter=spec',
      `--test-timeout=${suite.timeoutMs}`,
      ...(suite.serial ? ['--test-concurrency=1'] : []),
      ...suite.files(),
    ],
    { cwd: root, stdio: 'inherit' },
  );
  if (result.status !== 0) failed.push(name);
}
if (failed.length > 0) {
  console.error(`\nfailed suites: ${failed.join(', ')}`);
  process.exit(1);
}
