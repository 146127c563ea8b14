import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createOrigin, type FakeOrigin, type FileTree } from '../integration/action-origin-fixture.js';
import { REPO } from './harness.js';

/**
 * A simulated GitHub runner for the bundled action: GITHUB_* variables, an event JSON, a summary and an output file,
 * RUNNER_TEMP, and some runner secrets that must never reach the sandbox. The action runs with plain Node, as the
 * runner does, from a fresh scripts/bundle.mjs build (check-dist proves the committed bundle is the same bytes).
 */

export const RUNNER_SECRETS = {
  ACTIONS_RUNTIME_TOKEN: 'runtime-token-must-not-leak-1',
  GITHUB_TOKEN: 'ghs_runner_token_must_not_leak_2',
};
export const INPUT_TOKEN = 'ghs_input_token_must_not_leak_3';
export const HOST_VALUE = 'value-from-host-env-4';

/**
 * Builds the bundles into `<root>/pkg/dist` beside a package.json named airlock — the layout of the action's
 * checkout on a runner, where the CLI code finds dist/proxy/ from the package root — and returns the action entry.
 */
export function buildBundle(root: string): string {
  const pkg = join(root, 'pkg');
  const built = spawnSync(process.execPath, [join(REPO, 'scripts/bundle.mjs')], {
    cwd: REPO,
    env: { ...process.env, AIRLOCK_BUNDLE_OUT: join(pkg, 'dist') },
    encoding: 'utf8',
  });
  assert.equal(built.status, 0, built.stderr);
  // As in the repository, where "type": "module" makes dist/action/index.js an ES module.
  writeFileSync(join(pkg, 'package.json'), '{"name":"airlock","type":"module"}\n');
  return join(pkg, 'dist', 'action', 'index.js');
}

export interface ActionRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** What the sandboxed command printed: the stdout between the action's stop-commands and resume lines. */
  sandboxOutput: string;
  summary: string;
  outputs: Record<string, string>;
  workspace: string;
}

let counter = 0;

export async function runAction(
  bundle: string,
  root: string,
  origin: FakeOrigin,
  inputs: Record<string, string>,
  prepare?: (ws: string) => void,
  runnerEnv: Record<string, string> = {},
  /** The event payload; default: a pull_request `synchronize` event for the origin's PR. */
  event?: object,
): Promise<ActionRun> {
  const dir = join(root, `run-${++counter}`);
  const workspace = join(dir, 'workspace');
  const temp = join(dir, 'runner-temp');
  mkdirSync(workspace, { recursive: true });
  mkdirSync(temp, { recursive: true });
  prepare?.(workspace);
  const eventPath = join(dir, 'event.json');
  writeFileSync(
    eventPath,
    JSON.stringify(
      event ?? {
        action: 'synchronize',
        number: 1,
        pull_request: {
          number: 1,
          title: 'A PR',
          head: { sha: origin.prSha, ref: 'feature' },
          base: { ref: origin.baseRef },
        },
      },
    ),
  );
  const summaryFile = join(dir, 'summary.md');
  const outputFile = join(dir, 'output.txt');
  writeFileSync(summaryFile, '');
  writeFileSync(outputFile, '');
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/root',
    GITHUB_ACTIONS: 'true',
    GITHUB_EVENT_NAME: 'pull_request',
    GITHUB_EVENT_PATH: eventPath,
    GITHUB_WORKSPACE: workspace,
    GITHUB_SERVER_URL: origin.serverUrl,
    GITHUB_REPOSITORY: origin.repository,
    GITHUB_REF: 'refs/pull/1/merge',
    GITHUB_SHA: origin.prSha,
    GITHUB_RUN_ID: String(counter),
    GITHUB_STEP_SUMMARY: summaryFile,
    GITHUB_OUTPUT: outputFile,
    RUNNER_TEMP: temp,
    HARNESS_HOST_VALUE: HOST_VALUE,
    ...RUNNER_SECRETS,
    INPUT_TOKEN,
    INPUT_ENGINE: 'podman',
    INPUT_MERGE: 'true',
    INPUT_CACHE: 'true',
    'INPUT_CACHE-MAX-AGE': '168',
    'INPUT_SANDBOX-ARGS': '',
    'INPUT_PR-SHA': '',
  };
  Object.assign(env, runnerEnv);
  for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.toUpperCase()}`] = v;
  const child = spawn(process.execPath, [bundle], { cwd: workspace, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve(c));
  });
  const stop = /^::stop-commands::([0-9a-f]{32})$/m.exec(stdout);
  let sandboxOutput = '';
  if (stop) {
    const start = stop.index + stop[0].length;
    const end = stdout.indexOf(`::${stop[1]}::`, start);
    sandboxOutput = stdout.slice(start, end < 0 ? undefined : end);
  }
  const outputs: Record<string, string> = {};
  const outText = readFileSync(outputFile, 'utf8');
  for (const m of outText.matchAll(/^([\w-]+)<<(\S+)\n([\s\S]*?)\n\2$/gm)) outputs[m[1]!] = m[3]!;
  return { code, stdout, stderr, sandboxOutput, summary: readFileSync(summaryFile, 'utf8'), outputs, workspace };
}

export function originWith(root: string, name: string, base: FileTree, pr: FileTree): FakeOrigin {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  return createOrigin(dir, base, pr);
}
