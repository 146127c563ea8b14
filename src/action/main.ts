import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as core from '@actions/core';
import { kubernetesChosen } from '../cli/commands/kube.js';
import type { Command, CommandContext } from '../cli/commands/types.js';
import type { LoadedPolicy, PolicyLocation } from '../cli/config/types.js';
import { AirlockError, EXIT } from '../cli/errors.js';
import { reportError } from '../cli/main.js';
import { authHeader, checkoutBase, fetchCommit, type Origin } from './git.js';
import { syncImageCache } from './image-cache.js';
import { readInputs } from './inputs.js';
import { sandboxRunArgv } from './sandbox-command.js';
import { secretValues } from './secrets.js';
import { renderSummary } from './summary.js';
import { tallyNetworkLog } from '../protocol/network-log-records.js';
import { suggestAllowlist } from '../protocol/allowlist-suggest.js';
import { evidenceFromLog, renderSuggestion } from '../cli/config/suggestion.js';
import { resolveTarget, TargetError } from './target.js';

/**
 * The airlock GitHub Action. Everything before `run` happens on the host with trusted inputs only: the base branch's
 * checkout (its .airlock/ is the policy), the PR commit as git objects, the images. The PR's code first executes
 * inside the sandbox, and nothing of ours runs in the workspace afterwards — it is tainted from then on.
 */

/** The CLI pieces the action drives in-process (index.ts passes the real ones). */
export interface ActionDeps {
  run: Command;
  image: Command;
  loadPolicy: (location: PolicyLocation, env: NodeJS.ProcessEnv) => Promise<LoadedPolicy>;
  /** Every real credential value the run will hand the proxy (prepareCredentials().secretValues). */
  credentialValues: (policy: LoadedPolicy, env: NodeJS.ProcessEnv) => string[];
}

/** A CLI command in-process, with the CLI's own error-to-exit-code mapping (what `airlock …` would exit with). */
function cli(command: Command): Command {
  return async (argv, ctx) => {
    try {
      return await command(argv, ctx);
    } catch (err) {
      return reportError(err, ctx);
    }
  };
}

function required(env: NodeJS.ProcessEnv, name: string): string {
  const v = env[name];
  if (!v) throw new TargetError(`${name} is not set: the action must run on a GitHub Actions runner`);
  return v;
}

/** The triggering event's payload (GITHUB_EVENT_PATH): a JSON object, or the action cannot know what to test. */
async function readEvent(file: string): Promise<object> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new TargetError(`cannot read the event payload ${file}: ${(e as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new TargetError(`the event payload ${file} is not a JSON object`);
  }
  return parsed;
}

/** Options of `airlock run` the action sets; one place, so a renamed flag is one edit. */
const RUN_FLAGS = {
  networkLog: '--network-log',
  networkLogJson: '--network-log-json',
  maxImageAge: '--max-image-age',
  engine: '--engine',
  audit: '--audit',
  auditAllowlist: '--audit-allowlist',
  // The merge inside the sandbox may rewrite .airlock/ (the PR can change it), and no later run reads this
  // workspace's policy: every run checks the base branch out afresh.
  writablePolicy: '--writable-policy',
} as const;

export async function main(deps: ActionDeps, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  try {
    return await runAction(deps, env);
  } catch (e) {
    // Every expected failure is an AirlockError with a message; anything else is a bug, reported with its stack.
    core.setFailed(e instanceof AirlockError ? e.message : `internal error: ${(e as Error).stack ?? String(e)}`);
    return e instanceof AirlockError ? e.exitCode : EXIT.airlock;
  }
}

async function runAction(deps: ActionDeps, env: NodeJS.ProcessEnv): Promise<number> {
  const inputs = readInputs((name) => core.getInput(name));
  for (const notice of inputs.ignored) core.notice(notice);
  // The token is masked before anything can print it; so is the header git derives from it.
  if (inputs.token) {
    core.setSecret(inputs.token);
    core.setSecret(authHeader(inputs.token).replace(/^AUTHORIZATION: basic /, ''));
  }

  const eventName = required(env, 'GITHUB_EVENT_NAME');
  const event = await readEvent(required(env, 'GITHUB_EVENT_PATH'));
  const target = resolveTarget(eventName, event, env, inputs.prSha);
  for (const w of target.warnings) core.warning(w);

  const workspace = required(env, 'GITHUB_WORKSPACE');
  const origin: Origin = {
    url: `${required(env, 'GITHUB_SERVER_URL').replace(/\/+$/, '')}/${required(env, 'GITHUB_REPOSITORY')}`,
    token: inputs.token || null,
  };

  core.startGroup(`airlock: check out the base ${target.baseKind} '${target.baseRef}'`);
  const { baseSha, droppedCredentials } = await checkoutBase(workspace, origin, target.baseRef, target.baseKind);
  core.endGroup();
  for (const key of droppedCredentials) {
    core.warning(
      `discarded a .git/config holding ${key} (a persisted credential the PR code could have read); give actions/checkout persist-credentials: false, or drop that step: the action checks out by itself`,
    );
  }

  // The policy names the secrets; mask their values before any further output (git, image builds, the run itself).
  const policy = await deps.loadPolicy({ cwd: workspace }, env);
  for (const value of new Set([...secretValues(policy, env), ...deps.credentialValues(policy, env)])) {
    core.setSecret(value);
  }
  core.info(
    `Policy from ${target.baseRef} at ${baseSha}: ${policy.files.sandbox ?? '(no sandbox.yaml)'}, allowlist sha256 ${policy.allowlistSha256}`,
  );

  core.startGroup(`airlock: fetch the PR commit ${target.prSha}`);
  await fetchCommit(workspace, origin, target.prSha);
  core.endGroup();

  // Never under the workspace: the sandbox mounts it read-write and could rewrite the log the summary is made from.
  const runnerTemp = env.RUNNER_TEMP || tmpdir();
  const ctx: CommandContext = { cwd: workspace, env, stdout: process.stdout, stderr: process.stderr, isTTY: false };
  const engineArgs: string[] = inputs.engine ? [RUN_FLAGS.engine, inputs.engine] : [];
  const actionArgs = [...engineArgs, RUN_FLAGS.writablePolicy];
  // On Kubernetes the images come from a registry (docs/kubernetes.md): there is no local image store to cache.
  const onKubernetes = await kubernetesChosen(inputs.engine ?? undefined, env);
  if (inputs.cache && !onKubernetes) {
    const outcome = await core.group('airlock: images from the Actions cache', () =>
      syncImageCache({
        image: cli(deps.image),
        ctx,
        dir: join(runnerTemp, 'airlock-image-cache'),
        version: inputs.cacheVersion,
        imageArgs: engineArgs,
      }),
    );
    if (outcome.status === 'done') {
      core.info(`image cache: restored [${outcome.hits.join(', ')}], saved [${outcome.saved.join(', ')}]`);
      actionArgs.push(RUN_FLAGS.maxImageAge, String(inputs.cacheMaxAge));
    }
  }

  const networkLog = join(
    runnerTemp,
    `airlock-network-${env.GITHUB_RUN_ID ?? 'local'}-${env.GITHUB_RUN_ATTEMPT ?? '1'}.log`,
  );
  const networkLogJson = networkLog.replace(/\.log$/, '.jsonl');
  if (policy.sandbox.network_sandbox) {
    actionArgs.push(RUN_FLAGS.networkLog, networkLog, RUN_FLAGS.networkLogJson, networkLogJson);
  }
  const audit = inputs.audit && policy.sandbox.network_sandbox;
  const suggestionFile = networkLog.replace(/\.log$/, '-suggested-allowlist.yaml');
  if (audit) actionArgs.push(RUN_FLAGS.audit, RUN_FLAGS.auditAllowlist, suggestionFile);
  if (inputs.audit && !policy.sandbox.network_sandbox) {
    core.warning('audit: true has no effect: network_sandbox is false in the base policy, so there is no allowlist');
  }

  const argv = sandboxRunArgv({
    sandboxArgs: inputs.sandboxArgs,
    actionArgs,
    mode: inputs.merge ? 'merge' : 'checkout',
    prSha: target.prSha,
    command: inputs.command,
  });
  // The sandbox's output goes to the job log, where the runner obeys `::command::` lines; a random token that the
  // sandbox never sees stops it from annotating, masking away evidence, or setting outputs.
  const resumeToken = randomBytes(16).toString('hex');
  core.info(`airlock: running the ${inputs.merge ? 'merged' : 'checked-out'} PR in the sandbox`);
  process.stdout.write(`::stop-commands::${resumeToken}\n`);
  let exitCode: number;
  try {
    exitCode = await cli(deps.run)(argv, ctx);
  } finally {
    process.stdout.write(`::${resumeToken}::\n`);
  }

  const jsonl = policy.sandbox.network_sandbox ? await readFile(networkLogJson, 'utf8').catch(() => null) : null;
  const tally = jsonl === null ? null : tallyNetworkLog(jsonl);
  for (const group of tally?.blockedByHost ?? []) {
    core.warning(
      `airlock blocked ${group.count} request${group.count === 1 ? '' : 's'} to ${group.host}; see the job summary for the allowlist entries that would permit them`,
      { title: 'airlock: blocked host' },
    );
  }
  // Entries for what the base policy refused (or, in audit mode, let through): computed against the allowlist the
  // action loaded before the sandbox ran, never against the workspace, which the sandbox could have rewritten.
  const suggestion = jsonl === null ? null : suggestAllowlist(evidenceFromLog(jsonl).requests, policy.allowlist);
  const suggestionYaml = suggestion && suggestion.entries.length > 0 ? renderSuggestion(suggestion) : null;
  const suggestionWritten =
    audit &&
    (await readFile(suggestionFile, 'utf8').then(
      () => true,
      () => false,
    ));
  const summaryFile = env.GITHUB_STEP_SUMMARY;
  if (summaryFile) {
    await core.summary
      .addRaw(
        renderSummary({
          exitCode,
          baseRef: target.baseRef,
          baseSha,
          prSha: target.prSha,
          mode: inputs.merge ? 'merge' : 'checkout',
          allowlistSha256: policy.allowlistSha256,
          networkSandbox: policy.sandbox.network_sandbox,
          audit,
          tally,
          suggestion: suggestionYaml,
          ...(suggestionWritten ? { suggestionFile } : {}),
        }),
      )
      .write();
  }
  core.setOutput('exit-code', String(exitCode));
  core.setOutput('base-sha', baseSha);
  core.setOutput('allowlist-sha256', policy.allowlistSha256);
  if (policy.sandbox.network_sandbox) {
    core.setOutput('network-log', networkLog);
    core.setOutput('network-log-json', networkLogJson);
  }
  if (suggestionWritten) core.setOutput('suggested-allowlist', suggestionFile);
  if (exitCode === EXIT.airlock) {
    core.setFailed(
      `airlock run exited with ${exitCode}: airlock's own failure (see its message above) or the command's`,
    );
  } else if (exitCode !== 0) core.setFailed(`the command exited with ${exitCode} in the sandbox`);
  return exitCode;
}
