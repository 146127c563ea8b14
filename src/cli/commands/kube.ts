/**
 * airlock on Kubernetes (docs/kubernetes.md):
 *
 *   airlock run --engine kubernetes [options] -- CMD   a run as a proxy pod and a sandbox pod (runOnKubernetes)
 *   airlock kube manifests [options] -- CMD            the same objects as YAML, for review and GitOps
 *   airlock kube rbac [--namespace NS] [--service-account SA]   the Role and RoleBinding the runner needs
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { loadPolicy } from '../config/load.js';
import { findOnPath } from '../engine/engine.js';
import { ConfigError, EngineError, EXIT, UsageError } from '../errors.js';
import { createKubeApi, inClusterConnection, kubeconfigConnection, SERVICE_ACCOUNT_DIR } from '../kube/api.js';
import { readRunnerPod, runKubeSandbox } from '../kube/engine.js';
import { runManifests, runnerRbac, type RunObject } from '../kube/manifests.js';
import {
  apiServerTarget,
  buildPlan,
  caEnvironment,
  KUBE_OPTIONS,
  parseWorkspaceClaim,
  proxyPodConfig,
  redactProxyConfig,
  workspaceFromRunnerPod,
} from '../kube/plan.js';
import { prepareCredentials } from '../secrets/prepare.js';
import { generateRunCa } from '../session/ca.js';
import { newRunIdentity } from '../session/labels.js';
import { openNetworkLogSink } from '../session/network-log-sink.js';
import { hostAddresses } from '../session/proxy-network.js';
import {
  LOG_OPTIONS,
  loggerFor,
  NETWORK_LOG_OPTIONS,
  networkLogOptions,
  parseWholeNumber,
  POLICY_OPTIONS,
  policyLocation,
  splitAtDoubleDash,
} from './options.js';
import type { Command, CommandContext } from './types.js';
import { containerEnvironment, exitCodeFor } from '../session/sandboxed-command.js';

/**
 * Whether `airlock run` should use Kubernetes: asked for with `--engine kubernetes`, or — with no engine named —
 * running inside a pod (the service-account token is mounted) on a machine without Podman or Docker, which is
 * where actions-runner-controller's kubernetes mode puts a job (it also sets ACTIONS_RUNNER_CONTAINER_HOOKS).
 */
export async function kubernetesChosen(
  engine: string | undefined,
  env: NodeJS.ProcessEnv,
  serviceAccountDir: string = SERVICE_ACCOUNT_DIR,
): Promise<boolean> {
  if (engine !== undefined) return engine === 'kubernetes';
  if (!env.KUBERNETES_SERVICE_HOST || !existsSync(`${serviceAccountDir}/token`)) return false;
  for (const binary of ['podman', 'docker']) if (await findOnPath(binary, env.PATH)) return false;
  return true;
}

/** The engine flag as given (`--engine` or its alias), before podman/docker validation. */
export function rawEngineFlag(argv: string[]): string | undefined {
  const { options } = splitAtDoubleDash(argv);
  for (let i = 0; i < options.length; i++) {
    const arg = options[i]!;
    for (const flag of ['--engine', '--container-command']) {
      if (arg === flag) return options[i + 1];
      if (arg.startsWith(`${flag}=`)) return arg.slice(flag.length + 1);
    }
  }
  return undefined;
}

const RUN_OPTIONS = {
  ...POLICY_OPTIONS,
  ...LOG_OPTIONS,
  ...NETWORK_LOG_OPTIONS,
  ...KUBE_OPTIONS,
  engine: { type: 'string' },
  'container-command': { type: 'string' },
  image: { type: 'string' },
  timeout: { type: 'string' },
  'fail-on-block': { type: 'boolean', default: false },
  // Accepted so the same options work on every engine; images come from a registry here, nothing is built.
  'max-image-age': { type: 'string' },
  // Accepted for the same reason: the workspace is a volume claim, and no local policy is mounted into the sandbox.
  'writable-policy': { type: 'boolean', default: false },
  // Refused with a clear message below rather than by the parser (the Action passes them).
  audit: { type: 'boolean', default: false },
  'audit-allowlist': { type: 'string' },
  mount: { type: 'string', multiple: true, default: [] as string[] },
} as const;

const RUN_USAGE = `usage: airlock run --engine kubernetes [options] -- COMMAND [ARGS...]

  The run becomes a proxy pod and a sandbox pod in one namespace (docs/kubernetes.md). Besides run's policy, log,
  network-log, --image, --timeout and --fail-on-block options:
  --namespace NS                 namespace of the run (default: the service account's or kubeconfig's)
  --proxy-image REF              the proxy image in a registry (or AIRLOCK_PROXY_IMAGE)
  --workspace-claim CLAIM[:DIR]  the PersistentVolumeClaim holding the checkout (default: the runner pod's)
  --seccomp localhost[:PROFILE]|runtime-default   the sandbox's seccomp profile (default localhost:
                                 airlock/seccomp-profile.json, installed on the nodes)
  --user-namespace               hostUsers: false (a user namespace per pod; Kubernetes 1.33+)
`;

function connect(env: NodeJS.ProcessEnv) {
  const connection = inClusterConnection(env) ?? kubeconfigConnection(env);
  if (!connection) {
    throw new EngineError('no Kubernetes API found: not in a pod with a service account, and no kubeconfig');
  }
  return connection;
}

/** What both a run and its manifests start from: the policy, fresh surrogates and CA, and the proxy's config. */
async function prepareKubeRun(
  values: Parameters<typeof policyLocation>[0],
  ctx: CommandContext,
  ownAddresses: string[],
) {
  const policy = await loadPolicy(policyLocation(values, ctx.cwd), ctx.env);
  if (!policy.sandbox.network_sandbox) {
    throw new ConfigError('network_sandbox: false is not available on Kubernetes: the proxy pod is the network');
  }
  const credentials = prepareCredentials(policy, ctx.env);
  const ca = await generateRunCa();
  const identity = newRunIdentity();
  const upstreamCaPem = policy.upstreamCaFile ? await readFile(policy.upstreamCaFile, 'utf8') : undefined;
  const proxyConfig = proxyPodConfig(policy, credentials, ca, identity.runId, upstreamCaPem, ownAddresses);
  const sandboxEnv = containerEnvironment(
    policy.sandbox.env,
    policy.sandbox.pass_env,
    ctx.env,
    credentials.containerEnv,
    caEnvironment(),
  );
  return { policy, credentials, caCertPem: ca.certPem, runId: identity.runId, proxyConfig, sandboxEnv };
}

export async function runOnKubernetes(argv: string[], ctx: CommandContext): Promise<number> {
  const split = splitAtDoubleDash(argv);
  const { values } = parseArgs({ args: split.options, options: RUN_OPTIONS, strict: true, allowPositionals: false });
  if (values.help) {
    ctx.stdout.write(RUN_USAGE);
    return EXIT.ok;
  }
  if (values.audit || values['audit-allowlist'] !== undefined) {
    throw new UsageError(
      '--audit is not available with --engine kubernetes yet: audit on Podman or Docker (docs/audit.md)',
    );
  }
  if (split.command === null || split.command.length === 0) {
    throw new UsageError(`no command given: write it after --, e.g. airlock run -- npm test\n\n${RUN_USAGE}`);
  }
  const command = split.command;
  if (values.mount.length > 0) {
    throw new UsageError('--mount is not available with --engine kubernetes: a pod mounts volumes, not host paths');
  }
  const timeoutFlag = values.timeout === undefined ? undefined : parseWholeNumber('--timeout', values.timeout, 10);
  const log = loggerFor(values, ctx);
  const stop = new AbortController();
  const handlers = (['SIGINT', 'SIGTERM'] as const).map((s) => [s, () => stop.abort(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);
  try {
    const prepared = await prepareKubeRun(values, ctx, hostAddresses());
    const { policy, runId } = prepared;
    for (const warning of prepared.credentials.warnings) log.warn(warning);
    const connection = connect(ctx.env);
    const api = createKubeApi(connection);
    const namespace = values.namespace ?? connection.namespace ?? 'default';

    // In a pod (ARC): the runner pod owns the run's objects, and its volume is the workspace.
    // A pod's host name is its name; outside a pod there is no runner pod to look up.
    const runner = ctx.env.KUBERNETES_SERVICE_HOST
      ? await readRunnerPod(api, namespace, ctx.env.HOSTNAME ?? hostname())
      : null;
    const owner =
      runner?.metadata?.name && runner.metadata.uid
        ? { name: runner.metadata.name, uid: runner.metadata.uid }
        : undefined;
    if (!owner) log.info('not running in a pod of this namespace: objects get no owner reference');
    const workspace = values['workspace-claim']
      ? parseWorkspaceClaim(values['workspace-claim'])
      : runner
        ? workspaceFromRunnerPod(runner, ctx.cwd)
        : null;
    if (!workspace) {
      throw new UsageError(
        `cannot hand ${ctx.cwd} to the sandbox pod: it is on no PersistentVolumeClaim of the runner pod; ` +
          'give --workspace-claim CLAIM[:SUBDIR] (docs/kubernetes.md#workspace)',
      );
    }
    const timeoutSeconds = timeoutFlag ?? policy.sandbox.resource_limits.timeout;
    const plan = buildPlan({
      ...prepared,
      flags: values,
      env: ctx.env,
      command,
      namespace,
      workspace,
      ...(owner ? { owner } : {}),
      // A ReadWriteOnce workspace volume can only be mounted on the runner's node.
      ...(runner?.spec?.nodeName ? { nodeName: runner.spec.nodeName } : {}),
      forbiddenTargets: apiServerTarget(ctx.env),
      ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}),
    });
    const sinks = await openNetworkLogSink(networkLogOptions(values, ctx.cwd), {
      runId,
      stderr: ctx.stderr,
      warn: (m) => log.warn(m),
    });
    let outcome;
    try {
      log.info(`run ${runId} in namespace ${namespace} on ${api.server}`);
      outcome = await runKubeSandbox({
        api,
        plan,
        secrets: { proxyConfigJson: JSON.stringify(prepared.proxyConfig), sandboxEnv: prepared.sandboxEnv },
        stdout: ctx.stdout,
        log,
        onNetworkEvent: (line) => sinks.write(line),
        ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}),
        stop: stop.signal,
      });
    } finally {
      await sinks.close();
    }
    const code = exitCodeFor(outcome, policy.sandbox.resource_limits.memory !== undefined, log);
    const counts = sinks.counts();
    if (counts.blocked > 0) {
      log.warn(
        `${counts.blocked} request${counts.blocked === 1 ? ' was' : 's were'} blocked by the network allowlist ` +
          `(${counts.allowed} allowed); see ${counts.logPath}`,
      );
      if (values['fail-on-block'] && code === EXIT.ok) return EXIT.blockedRequests;
    }
    return code;
  } catch (err) {
    if (stop.signal.aborted) {
      log.info(`${String(stop.signal.reason)} received before the command started: nothing was run`);
      return stop.signal.reason === 'SIGINT' ? 130 : 143;
    }
    throw err;
  } finally {
    for (const [s, h] of handlers) process.off(s, h);
    await log.close();
  }
}

const MANIFEST_OPTIONS = {
  ...POLICY_OPTIONS,
  ...KUBE_OPTIONS,
  image: { type: 'string' },
  timeout: { type: 'string' },
  'proxy-ip': { type: 'string' },
  'with-secrets': { type: 'boolean', default: false },
  'service-account': { type: 'string' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

const USAGE = `usage:
  airlock kube manifests [options] -- COMMAND [ARGS...]   print the objects of one run as YAML (review, GitOps)
  airlock kube rbac [--namespace NS] [--service-account SA]   print the Role and RoleBinding the runner needs

manifests reads the policy like airlock run and takes run's Kubernetes options (--namespace, --proxy-image,
--image, --workspace-claim, --seccomp, --user-namespace, --timeout), and:
  --proxy-ip IP     the proxy pod's IP for the sandbox pod (default: the placeholder PROXY_POD_IP; airlock run
                    creates the sandbox pod once the proxy pod has its address)
  --with-secrets    DANGEROUS: print the per-run CA key and the real credential values in the Secrets instead of
                    placeholders (for applying the output as is; never commit or log it)
`;

function toYaml(objects: object[], comments: string[] = []): string {
  return objects
    .map((o, i) => {
      const comment = comments[i] ? comments[i].replace(/^/gm, '# ') + '\n' : '';
      return `---\n${comment}${stringify(o, { lineWidth: 0, aliasDuplicateObjects: false })}`;
    })
    .join('');
}

/** One line per document saying what it is for, so a reviewer does not have to infer it. */
function describe(object: RunObject): string {
  const name = object.metadata?.name ?? '';
  if (name.startsWith('airlock-proxy-config-')) {
    return 'The proxy configuration (CA key, real credentials): only the proxy pod mounts it; airlock run deletes it once the proxy has read it.';
  }
  if (name.startsWith('airlock-sandbox-env-'))
    return "The sandbox's environment (surrogates, CA paths, pass_env values).";
  if (object.kind === 'ConfigMap')
    return 'The per-run CA certificate (never its key), mounted read-only in the sandbox.';
  if (object.kind === 'NetworkPolicy') {
    return name.startsWith('airlock-sandbox-')
      ? 'Sandbox pod: egress only to the proxy pod on DNS, HTTP and HTTPS; no ingress at all.'
      : 'Proxy pod: ingress only from the sandbox pod; egress to public addresses and the cluster DNS.';
  }
  return name.startsWith('airlock-proxy-')
    ? 'The proxy pod (created first; the sandbox pod needs its IP).'
    : 'The sandbox pod: its init container proves the NetworkPolicy enforced before the command runs.';
}

async function manifests(argv: string[], ctx: CommandContext): Promise<number> {
  const split = splitAtDoubleDash(argv);
  const { values } = parseArgs({
    args: split.options,
    options: MANIFEST_OPTIONS,
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    ctx.stdout.write(USAGE);
    return EXIT.ok;
  }
  if (split.command === null || split.command.length === 0) {
    throw new UsageError(`no command given: write it after --, e.g. airlock kube manifests -- npm test\n\n${USAGE}`);
  }
  const timeout = values.timeout === undefined ? undefined : parseWholeNumber('--timeout', values.timeout, 10);
  const prepared = await prepareKubeRun(values, ctx, []);
  const { policy, credentials, proxyConfig, sandboxEnv: env } = prepared;
  const resolvedTimeout = timeout ?? policy.sandbox.resource_limits.timeout;
  const plan = buildPlan({
    ...prepared,
    flags: values,
    env: ctx.env,
    command: split.command,
    namespace: values.namespace ?? 'default',
    workspace: values['workspace-claim'] ? parseWorkspaceClaim(values['workspace-claim']) : null,
    forbiddenTargets: apiServerTarget(ctx.env),
    ...(resolvedTimeout !== undefined ? { timeoutSeconds: resolvedTimeout } : {}),
  });
  const withSecrets = values['with-secrets'];
  const passed = new Set(policy.sandbox.pass_env);
  const sandboxEnv = withSecrets
    ? env
    : Object.fromEntries(
        Object.entries(env).map(([k, v]) => [
          k,
          passed.has(k) && !(k in credentials.containerEnv) ? `<value of $${k} on the runner>` : v,
        ]),
      );
  const objects: RunObject[] = runManifests(
    plan,
    {
      proxyConfigJson: JSON.stringify(withSecrets ? proxyConfig : redactProxyConfig(proxyConfig), null, 2),
      sandboxEnv,
    },
    values['proxy-ip'] ?? null,
  );
  ctx.stdout.write(toYaml(objects, objects.map(describe)));
  if (withSecrets) {
    ctx.stderr.write('airlock: warning: --with-secrets printed the CA key and real credential values\n');
  }
  return EXIT.ok;
}

export const run: Command = async (argv, ctx) => {
  const [sub, ...rest] = argv;
  if (sub === 'manifests') return manifests(rest, ctx);
  if (sub === 'rbac') {
    const { values } = parseArgs({
      args: rest,
      options: { namespace: { type: 'string' }, 'service-account': { type: 'string' } },
      strict: true,
      allowPositionals: false,
    });
    ctx.stdout.write(toYaml(runnerRbac(values.namespace ?? 'default', values['service-account'] ?? 'default')));
    return EXIT.ok;
  }
  if (sub === undefined || sub === '-h' || sub === '--help') {
    ctx.stdout.write(USAGE);
    return sub === undefined ? EXIT.usage : EXIT.ok;
  }
  throw new UsageError(`unknown kube command '${sub}'\n\n${USAGE}`);
};
