/**
 * `airlock run [options] -- COMMAND [ARGS…]`: the command in a hardened container (docs/container.md), on the
 * network the network session provides, with the command's own exit code — or 124 (timeout), 137 (OOM), 125
 * (airlock's own failure), 128+signal (stopped by SIGINT/SIGTERM).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadPolicy } from '../config/load.js';
import { resolveEngine } from '../engine/engine.js';
import { readHostLimits } from '../engine/host-limits.js';
import { readLimitFacts } from '../engine/engine-info.js';
import { cgroupLimitRequests, settleLimits } from '../engine/limit-enforcement.js';
import { DEFAULT_PIDS_LIMIT, type ContainerLimits, type ContainerSpec } from '../engine/run-args.js';
import { EXIT, UsageError } from '../errors.js';
import { prepareRunImage } from '../images/run-image.js';
import { prepareCredentials } from '../secrets/prepare.js';
import { runContainer } from '../session/container.js';
import { newRunIdentity, resourceLabels, resourceName } from '../session/labels.js';
import { guardPolicy, parseMountFlag, resolveMounts, WORKSPACE } from '../session/mounts.js';
import { runSummary } from '../session/run-summary.js';
import { addEvidence, emptyEvidence, renderSuggestion, type LogEvidence } from '../config/suggestion.js';
import { createNetworkTally } from '../../protocol/network-log-records.js';
import { suggestAllowlist } from '../../protocol/allowlist-suggest.js';
import type { LoadedPolicy } from '../config/types.js';
import type { Allowlist } from '../../protocol/allowlist.js';
import type { ImageSource } from '../images/run-image.js';
import { Interruption } from '../session/interruption.js';
import { unrestrictedNetwork, type NetworkSession, type NetworkSessionRequest } from '../session/network-session.js';
import { openProxyNetwork } from '../session/proxy-network.js';
import { removeOrphans } from '../session/orphans.js';
import { assertKernelSeccomp, writeSeccompProfile, type SeccompProfileFile } from '../session/seccomp-file.js';
import { parseFlags } from './parse-flags.js';
import {
  ENGINE_OPTIONS,
  engineFlag,
  givenNetworkLogFlags,
  KEEP_IMAGES_OPTION,
  keepImagesFlag,
  LOG_OPTIONS,
  loggerFor,
  NETWORK_LOG_OPTIONS,
  networkLogOptions,
  parseWholeNumber,
  POLICY_OPTIONS,
  policyLocation,
  splitAtDoubleDash,
  type NetworkLogFlags,
} from './options.js';
import type { Command } from './types.js';
import { containerEnvironment, exitCodeFor } from '../session/sandboxed-command.js';

const RUN_OPTIONS = {
  ...POLICY_OPTIONS,
  ...ENGINE_OPTIONS,
  ...LOG_OPTIONS,
  ...NETWORK_LOG_OPTIONS,
  image: { type: 'string' },
  'max-image-age': { type: 'string' },
  ...KEEP_IMAGES_OPTION,
  timeout: { type: 'string' },
  mount: { type: 'string', multiple: true, default: [] as string[] },
  'fail-on-block': { type: 'boolean', default: false },
  'require-limits': { type: 'boolean', default: false },
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
  --require-limits        exit 125 instead of running when the engine cannot enforce pids/memory/cpu limits here
  --audit                 let requests the allowlist refuses through, log them as would_block, and write a
                          suggested allowlist (docs/audit.md); safety refusals still apply
  --audit-allowlist FILE  where --audit writes the suggested allowlist (default: a file in the temp directory)
  --writable-policy       do not mount .airlock/ and .airut/ read-only in the sandbox (for CI wrappers that
                          check the policy out afresh for every run)
  --verbose | --debug     progress on stderr | also engine command lines
  --log FILE              write airlock's messages to FILE instead of stderr
`;

/** The session the policy asks for: the network sandbox, or (`network_sandbox: false`) the engine's network. */
function openNetworkSession(request: NetworkSessionRequest, flags: NetworkLogFlags): Promise<NetworkSession> {
  if (request.policy.sandbox.network_sandbox) return openProxyNetwork(request);
  const given = givenNetworkLogFlags(flags);
  if (given.length > 0) {
    request.log.warn(`network_sandbox is false: ${given.join(', ')} ignored (there is no proxy to log)`);
  }
  return Promise.resolve(unrestrictedNetwork(request.log));
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

    const limits = policy.sandbox.resource_limits;
    const wanted: ContainerLimits = {
      memory: limits.memory,
      disk: limits.disk,
      cpus: limits.cpus,
      pidsLimit: limits.pids_limit ?? DEFAULT_PIDS_LIMIT,
      ...readHostLimits(),
    };
    const requests = cgroupLimitRequests({
      pidsLimit: wanted.pidsLimit ?? DEFAULT_PIDS_LIMIT,
      pidsLimitDefaulted: limits.pids_limit === undefined,
      memory: limits.memory,
      cpus: limits.cpus,
    });
    const requiredBy = values['require-limits']
      ? '--require-limits'
      : limits.require
        ? 'resource_limits.require'
        : null;
    // Which limits the engine enforces here: asked alongside the start-up, or first when a missing one must stop
    // the run before anything is created.
    const factsReading = readLimitFacts(engine, ctx.env, interruption.signal);
    const settled = requiredBy ? settleLimits(await factsReading, wanted, requests, requiredBy) : null;

    // The sweep only removes resources of dead owners, never this run's, so it runs alongside the start-up.
    orphanSweep = removeOrphans(engine).then(
      (orphans) => {
        const removed = [...orphans.containers, ...orphans.networks];
        if (removed.length > 0) log.info(`removed resources of dead airlock runs: ${removed.join(', ')}`);
      },
      (e: unknown) => log.warn(`orphan cleanup failed: ${e instanceof Error ? e.message : String(e)}`),
    );

    const identity = newRunIdentity();
    // The proxy and the image do not depend on each other: start both at once.
    const networkOpening = openNetworkSession(
      {
        engine,
        identity,
        policy,
        credentials,
        log,
        networkLog: networkLogOptions(values, ctx.cwd),
        stderr: ctx.stderr,
        audit,
        onRecord: (record) => {
          tally.add(record);
          if (audit) addEvidence(record, evidence);
        },
      },
      values,
    );
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

    const { limits: enforced, warning } = settled ?? settleLimits(await factsReading, wanted, requests, null);
    if (warning) log.warn(warning);
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
      limits: enforced,
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
    const code = exitCodeFor(outcome, enforced.memory !== undefined, log);
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
