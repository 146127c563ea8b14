/**
 * `airlock run [options] -- COMMAND [ARGS…]`: the command in a hardened container (docs/container.md), on the
 * network the network session provides, with the command's own exit code — or 124 (timeout), 137 (OOM), 125
 * (airlock's own failure), 128+signal (stopped by SIGINT/SIGTERM).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadPolicy } from '../config/load.js';
import { parseEngineKind, resolveEngine } from '../engine/engine.js';
import { readHostLimits } from '../engine/host-limits.js';
import { DEFAULT_PIDS_LIMIT, type ContainerSpec } from '../engine/run-args.js';
import { EXIT, UsageError } from '../errors.js';
import { prepareRunImage } from '../images/run-image.js';
import { prepareCredentials } from '../secrets/prepare.js';
import { runContainer, type ContainerOutcome } from '../session/container.js';
import { describeExecFailure } from '../session/exec-failure.js';
import { newRunIdentity, resourceLabels, resourceName } from '../session/labels.js';
import { createLogger, type Logger } from '../session/log.js';
import { guardPolicy, parseMountFlag, resolveMounts, WORKSPACE } from '../session/mounts.js';
import { runSummary } from '../session/run-summary.js';
import { addEvidence, emptyEvidence, renderSuggestion, type LogEvidence } from '../config/suggestion.js';
import { createNetworkTally } from '../../protocol/network-log-records.js';
import { suggestAllowlist } from '../../protocol/allowlist-suggest.js';
import type { LoadedPolicy } from '../config/types.js';
import type { Allowlist } from '../../protocol/allowlist.js';
import type { ImageSource } from '../images/run-image.js';
import { Interruption } from '../session/interruption.js';
import { openNetworkSession, type NetworkSession } from '../session/network-session.js';
import { removeOrphans } from '../session/orphans.js';
import { assertKernelSeccomp, writeSeccompProfile, type SeccompProfileFile } from '../session/seccomp-file.js';
import { signalNumber } from '../engine/engine.js';
import type { PolicyLocation } from '../config/types.js';
import { parseFlags } from './parse-flags.js';
import type { Command, CommandContext } from './types.js';

/** Options every image-aware command shares (run, image save/load). */
export const ENGINE_OPTIONS = {
  engine: { type: 'string' },
  'container-command': { type: 'string' },
} as const;

export const POLICY_OPTIONS = {
  'config-dir': { type: 'string' },
  config: { type: 'string' },
  allowlist: { type: 'string' },
  dockerfile: { type: 'string' },
  'context-dir': { type: 'string' },
} as const;

export const LOG_OPTIONS = {
  verbose: { type: 'boolean', default: false },
  debug: { type: 'boolean', default: false },
  log: { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/** The network sandbox's flags; parsed here and handed to the network session untouched. */
export const NETWORK_OPTIONS = {
  'network-log': { type: 'string' },
  'network-log-json': { type: 'string' },
  'network-log-live': { type: 'boolean', default: false },
} as const;

const RUN_OPTIONS = {
  ...POLICY_OPTIONS,
  ...ENGINE_OPTIONS,
  ...LOG_OPTIONS,
  ...NETWORK_OPTIONS,
  image: { type: 'string' },
  'max-image-age': { type: 'string' },
  'keep-images': { type: 'string' },
  timeout: { type: 'string' },
  mount: { type: 'string', multiple: true, default: [] as string[] },
  'fail-on-block': { type: 'boolean', default: false },
  audit: { type: 'boolean', default: false },
  'audit-allowlist': { type: 'string' },
  'writable-policy': { type: 'boolean', default: false },
} as const;

const USAGE = `usage: airlock run [options] -- COMMAND [ARGS...]

  --config-dir DIR        policy directory (default .airlock/, else .airut/)
  --config FILE           sandbox.yaml        --allowlist FILE   network allowlist
  --dockerfile FILE       repo image Dockerfile  --context-dir DIR  its build context
  --engine podman|docker|kubernetes  container engine (alias --container-command; default podman if
                          installed; kubernetes: see airlock run --engine kubernetes --help)
  --image REF             run this prebuilt image instead of building one
  --max-image-age HOURS   rebuild the repo image when older (default 24, 0 = always)
  --keep-images N         after a build keep the N newest images of this Dockerfile (default 3, 0 = keep all)
  --timeout SECONDS       kill the container after this long (exit 124; at least 10)
  --mount SRC:DST[:ro]    extra bind mount (repeatable; DST /workspace replaces the default)
  --network-log FILE      append the network log (text) to FILE
  --network-log-json FILE append the network log (JSONL, docs/network-log.md) to FILE
  --network-log-live      print each network log line to stderr as [net] ... as it happens
  --fail-on-block         exit 3 when the command succeeded but a request was blocked
  --audit                 let requests the allowlist refuses through, log them as would_block, and write a
                          suggested allowlist (docs/audit.md); safety refusals still apply
  --audit-allowlist FILE  where --audit writes the suggested allowlist (default: a file in the temp directory)
  --writable-policy       do not mount .airlock/ and .airut/ read-only in the sandbox (for CI wrappers that
                          check the policy out afresh for every run)
  --verbose | --debug     progress on stderr | also engine command lines
  --log FILE              write airlock's messages to FILE instead of stderr
`;

type PolicyFlags = { [K in keyof typeof POLICY_OPTIONS]?: string };
type LogFlags = { verbose?: boolean; debug?: boolean; log?: string };

export function policyLocation(values: PolicyFlags, cwd: string): PolicyLocation {
  return {
    cwd,
    configDir: values['config-dir'],
    config: values.config,
    allowlist: values.allowlist,
    dockerfile: values.dockerfile,
    contextDir: values['context-dir'],
  };
}

export function loggerFor(values: LogFlags, ctx: CommandContext): Logger {
  return createLogger({
    verbose: values.verbose,
    debug: values.debug,
    file: values.log,
    cwd: ctx.cwd,
    stderr: ctx.stderr,
    isTTY: ctx.isTTY,
  });
}

/** The command is everything after the first `--`, verbatim; options are what precedes it. */
export function splitAtDoubleDash(argv: string[]): { options: string[]; command: string[] | null } {
  const at = argv.indexOf('--');
  if (at < 0) return { options: argv, command: null };
  return { options: argv.slice(0, at), command: argv.slice(at + 1) };
}

export function parseWholeNumber(flag: string, value: string, min: number): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < min) {
    throw new UsageError(`${flag} must be a whole number of at least ${min}, not '${value}'`);
  }
  return Number(value);
}

export function keepImagesFlag(value: string | undefined): number | undefined {
  return value === undefined ? undefined : parseWholeNumber('--keep-images', value, 0);
}

export function engineFlag(values: { engine?: string; 'container-command'?: string }) {
  if (values.engine !== undefined && values['container-command'] !== undefined) {
    throw new UsageError('give either --engine or --container-command, not both');
  }
  const raw = values.engine ?? values['container-command'];
  return raw === undefined ? undefined : parseEngineKind(raw);
}

/**
 * Variables for the container, later wins: `env`, `pass_env` (only those set on the host), surrogates, network, and
 * `IS_SANDBOX=1` last, as Airut's entrypoint exports it after everything else (tools check it to know they are
 * sandboxed).
 */
export function containerEnvironment(
  env: Record<string, string>,
  passEnv: string[],
  host: NodeJS.ProcessEnv,
  surrogates: Record<string, string>,
  network: Record<string, string>,
): Record<string, string> {
  const merged: Record<string, string> = { ...env };
  for (const name of passEnv) {
    const value = host[name];
    if (value !== undefined) merged[name] = value;
  }
  return { ...merged, ...surrogates, ...network, IS_SANDBOX: '1' };
}

export function exitCodeFor(outcome: ContainerOutcome, memoryLimited: boolean, log: Logger): number {
  switch (outcome.kind) {
    case 'exited':
      if (outcome.code === EXIT.oom && (outcome.oomKilled || memoryLimited)) {
        log.warn(
          `the command was killed (exit 137)${outcome.oomKilled ? ' because it ran out of memory' : ', most likely out of memory'}` +
            ': raise resource_limits.memory in sandbox.yaml',
        );
      }
      return outcome.code;
    case 'not-started':
      log.error(
        `the container engine could not start the container (engine exit ${outcome.code}); see its message above`,
      );
      return EXIT.airlock;
    case 'exec-failed':
      log.error(describeExecFailure(outcome.command, outcome.failure));
      return outcome.failure.code;
    case 'timeout':
      log.error(`the command timed out after ${outcome.seconds}s; the container was killed`);
      return EXIT.timeout;
    case 'signal':
      return 128 + signalNumber(outcome.signal);
    case 'sandbox-failure':
      log.error(`sandbox infrastructure failed: ${outcome.reason}`);
      return EXIT.airlock;
  }
}

/** Why the run uses its image, in the user's terms (printed on every run). */
export function imageReason(source: ImageSource, policy: LoadedPolicy, cwd: string): string {
  switch (source) {
    case 'flag':
      return 'given with --image';
    case 'config':
      return `image: in ${path.relative(cwd, policy.files.sandbox ?? 'sandbox.yaml')}`;
    case 'dockerfile':
      return `built from ${path.relative(cwd, policy.build?.dockerfile ?? 'Dockerfile')}`;
    case 'embedded':
      return policy.configDir === null
        ? "the host-toolchain default (no .airlock/ or .airut/ here), the host's /usr read-only"
        : `the host-toolchain default (no image: in sandbox.yaml, no container/ in ${path.relative(cwd, policy.configDir) || '.'}), the host's /usr read-only`;
  }
}

/**
 * Audit mode's suggestion: the current allowlist (its text as read before the run) with entries added for every
 * request it refused, or the suggestion alone when there is no allowlist file. Returns the path written.
 */
async function writeAuditSuggestion(
  evidence: LogEvidence,
  allowlist: Allowlist,
  allowlistText: string | undefined,
  file: string,
  cwd: string,
): Promise<string> {
  const target = path.resolve(cwd, file);
  const suggestion = suggestAllowlist(evidence.requests, allowlistText === undefined ? undefined : allowlist);
  await writeFile(target, renderSuggestion(suggestion, allowlistText));
  return target;
}

export const run: Command = async (argv, ctx) => {
  // Kubernetes is a different run altogether (pods, not containers): docs/kubernetes.md. Its code is loaded only
  // when it may be wanted, so a Podman/Docker run pays nothing for it.
  if (argv.includes('kubernetes') || argv.some((a) => a.endsWith('=kubernetes')) || ctx.env.KUBERNETES_SERVICE_HOST) {
    const kube = await import('./kube.js');
    if (await kube.kubernetesChosen(kube.rawEngineFlag(argv), ctx.env)) return kube.runOnKubernetes(argv, ctx);
  }
  const split = splitAtDoubleDash(argv);
  const { values, positionals } = parseFlags(
    { args: split.options, options: RUN_OPTIONS, strict: true, allowPositionals: true },
    'run',
  );
  if (values.help) {
    ctx.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (positionals.length > 0) {
    // `airlock run npm test`: the words are the command, written where options go.
    const words = [...positionals, ...(split.command ?? [])].join(' ');
    throw new UsageError(
      `'${positionals[0]}' is not an option of airlock run: put the command after --, as in airlock run [options] -- ${words}`,
    );
  }
  if (split.command === null || split.command.length === 0) {
    throw new UsageError(`no command given: write it after --, e.g. airlock run -- npm test\n\n${USAGE}`);
  }
  const command = split.command;
  const maxAgeHours =
    values['max-image-age'] === undefined ? 24 : parseWholeNumber('--max-image-age', values['max-image-age'], 0);
  const timeoutFlag = values.timeout === undefined ? undefined : parseWholeNumber('--timeout', values.timeout, 10);
  const requestedEngine = engineFlag(values);

  const log = loggerFor(values, ctx);
  let network: NetworkSession | null = null;
  let seccompProfile: SeccompProfileFile | null = null;
  let orphanSweep: Promise<void> = Promise.resolve();
  let releaseGuard: () => Promise<void> = () => Promise.resolve();
  const interruption = new Interruption();
  try {
    const policy = await loadPolicy(policyLocation(values, ctx.cwd), ctx.env);
    for (const warning of policy.warnings) log.warn(warning);
    const mounts = await resolveMounts(ctx.cwd, values.mount);
    // The policy guard applies to the default workspace (the working directory, where the next run reads its policy).
    const workspaceFromCwd = !values.mount.some((m) => parseMountFlag(m).target === WORKSPACE);
    if (workspaceFromCwd && !values['writable-policy']) {
      const guard = await guardPolicy(ctx.cwd, [
        policy.configDir,
        policy.files.sandbox,
        policy.files.allowlist,
        policy.build?.dockerfile,
      ]);
      releaseGuard = guard.release;
      mounts.push(...guard.mounts);
      for (const warning of guard.warnings) log.warn(warning);
    }
    const audit = values.audit && policy.sandbox.network_sandbox;
    if (values.audit && !audit) log.warn('network_sandbox is false: --audit ignored (there is no allowlist to audit)');
    // Read now, before the sandbox runs: with --writable-policy the file may be the sandbox's by the end.
    const allowlistText = audit && policy.files.allowlist ? await readFile(policy.files.allowlist, 'utf8') : undefined;
    const tally = createNetworkTally();
    const evidence = emptyEvidence();
    const credentials = prepareCredentials(policy, ctx.env);
    for (const warning of credentials.warnings) log.warn(warning);
    const engine = await resolveEngine(requestedEngine, ctx.env);
    log.debug(`engine: ${engine.kind} (${engine.binary})`);
    await assertKernelSeccomp();

    // The sweep only removes resources of dead owners, never this run's, so it runs alongside the start-up.
    orphanSweep = removeOrphans(engine).then(
      (orphans) => {
        const removed = [...orphans.containers, ...orphans.networks];
        if (removed.length > 0) log.info(`removed resources of dead airlock runs: ${removed.join(', ')}`);
      },
      (e: unknown) => log.warn(`orphan cleanup failed: ${e instanceof Error ? e.message : String(e)}`),
    );

    const identity = newRunIdentity();
    const flags = Object.fromEntries(
      Object.keys(NETWORK_OPTIONS).map((name) => [
        name,
        (values as Record<string, unknown>)[name] as string | boolean | undefined,
      ]),
    );
    // The proxy and the image do not depend on each other: start both at once.
    const networkOpening = openNetworkSession({
      engine,
      identity,
      policy,
      credentials,
      log,
      flags,
      signal: interruption.signal,
      cwd: ctx.cwd,
      stderr: ctx.stderr,
      audit,
      onRecord: (record) => {
        tally.add(record);
        if (audit) addEvidence(record, evidence);
      },
    });
    const imagePreparing = prepareRunImage({
      engine,
      policy,
      imageFlag: values.image,
      maxAgeHours,
      log,
      signal: interruption.signal,
      keepImages: keepImagesFlag(values['keep-images']),
    });
    const [opened, prepared] = await Promise.allSettled([networkOpening, imagePreparing]);
    if (opened.status === 'rejected') {
      if (prepared.status === 'rejected') log.debug(`image preparation also failed: ${String(prepared.reason)}`);
      throw opened.reason;
    }
    const session: NetworkSession = opened.value;
    network = session;
    if (prepared.status === 'rejected') throw prepared.reason;
    const image = prepared.value;
    log.notice(`image ${image.ref}: ${imageReason(image.source, policy, ctx.cwd)}`);

    const limits = policy.sandbox.resource_limits;
    const host = readHostLimits();
    const env = containerEnvironment(
      policy.sandbox.env,
      policy.sandbox.pass_env,
      ctx.env,
      credentials.containerEnv,
      session.env,
    );
    seccompProfile = await writeSeccompProfile();
    const spec: ContainerSpec = {
      engine: engine.kind,
      name: resourceName('run', identity),
      image: image.ref,
      command,
      labels: resourceLabels(identity),
      envNames: Object.keys(env),
      mounts: [...image.mounts, ...mounts, ...session.mounts],
      workdir: WORKSPACE,
      limits: {
        memory: limits.memory,
        disk: limits.disk,
        cpus: limits.cpus,
        pidsLimit: limits.pids_limit ?? DEFAULT_PIDS_LIMIT,
        nofile: host.nofile,
        nproc: host.nproc,
      },
      interactive: true,
      tty: ctx.isTTY,
      networkArgs: session.runArgs,
      seccompProfile: seccompProfile.path,
    };
    interruption.check();
    interruption.dispose();
    const outcome = await runContainer({
      engine,
      spec,
      env,
      stdout: ctx.stdout,
      stderr: ctx.stderr,
      timeoutSeconds: timeoutFlag ?? limits.timeout,
      failure: session.failure,
      log,
    });
    const code = exitCodeFor(outcome, limits.memory !== undefined, log);
    // Closing flushes the proxy's last log lines, so the counts below are complete.
    network = null;
    await session.close();
    const counts = session.counts?.();
    if (counts) {
      const suggestionPath = audit
        ? await writeAuditSuggestion(
            evidence,
            policy.allowlist,
            allowlistText,
            values['audit-allowlist'] ?? path.join(tmpdir(), `airlock-${identity.runId}-suggested-allowlist.yaml`),
            ctx.cwd,
          )
        : undefined;
      const summary = runSummary({ tally: tally.result(), audit, logPath: counts.logPath, suggestionPath });
      // Indented lines detail the warning above them: no second `warning:` tag.
      for (const line of summary.warnings) {
        if (line.startsWith('  ')) log.notice(line);
        else log.warn(line);
      }
      for (const line of summary.notices) log.notice(line);
      if (counts.blocked > 0 && values['fail-on-block'] && code === EXIT.ok) return EXIT.blockedRequests;
    }
    return code;
  } catch (e) {
    // A signal during preparation aborts it; whatever failed because of the abort, the answer is 128+signal.
    const interrupted = interruption.exitCode();
    if (interrupted === null) throw e;
    log.info(`${interruption.received} received before the command started: nothing was run`);
    return interrupted;
  } finally {
    interruption.dispose();
    try {
      await seccompProfile?.remove();
      await network?.close();
      await releaseGuard();
      await orphanSweep;
    } finally {
      await log.close();
    }
  }
};
