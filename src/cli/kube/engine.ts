/**
 * One sandboxed run on Kubernetes (docs/kubernetes.md): create the run's objects, wait for the proxy pod's ready
 * line, create the sandbox pod (whose init container proves the NetworkPolicy enforced), stream the command's log,
 * map its exit, relay the proxy's network log — and delete every object in `finally`, on every path. Fail closed:
 * anything unexpected before the command starts is exit 125 and the command never runs.
 */
import type { Writable } from 'node:stream';
import type { IPod } from 'kubernetes-models/v1';
import { decodeCanaryLine } from '../../protocol/proxy-pod.js';
import { decodeProxyLine, type EventLine } from '../../protocol/proxy-wire.js';
import { SandboxError } from '../errors.js';
import type { ContainerOutcome, StopSignal } from '../session/container.js';
import type { Logger } from '../session/log.js';
import { KubeApiError, lineSplitter, type KubeApi, type WatchEvent } from './api.js';
import {
  caConfigMap,
  kubeNames,
  networkPolicies,
  proxyConfigSecret,
  proxyPod,
  sandboxEnvSecret,
  sandboxPod,
  type KubeRunPlan,
  type RunObject,
} from './manifests.js';

/** Container states in which the kubelet will not get further without a change to the pod: give up at once. */
const STUCK_REASONS = new Set([
  'ErrImagePull',
  'ImagePullBackOff',
  'InvalidImageName',
  'ErrImageNeverPull',
  'CreateContainerConfigError',
  'CreateContainerError',
  'RunContainerError',
  'CrashLoopBackOff',
]);

export interface KubeRunRequest {
  api: KubeApi;
  plan: KubeRunPlan;
  secrets: { proxyConfigJson: string; sandboxEnv: Record<string, string> };
  stdout: Writable;
  log: Logger;
  /** Each event line of the proxy's log, for the network log sinks. */
  onNetworkEvent: (line: EventLine) => void;
  timeoutSeconds?: number;
  /** Aborted with the signal's name as reason (SIGINT/SIGTERM): stop, clean up, report. */
  stop: AbortSignal;
  /** Scheduling, image pulls and the ready line; past it the run fails with 125. */
  startTimeoutMs?: number;
}

interface ContainerStatus {
  name: string;
  state?: {
    waiting?: { reason?: string; message?: string };
    running?: { startedAt?: string };
    terminated?: { exitCode: number; reason?: string; message?: string };
  };
}

interface PodState {
  metadata?: { resourceVersion?: string; uid?: string };
  status?: {
    phase?: string;
    podIP?: string;
    reason?: string;
    message?: string;
    initContainerStatuses?: ContainerStatus[];
    containerStatuses?: ContainerStatus[];
  };
}

function collectionPath(namespace: string, object: RunObject): string {
  const ns = encodeURIComponent(namespace);
  switch (object.kind) {
    case 'Secret':
      return `/api/v1/namespaces/${ns}/secrets`;
    case 'ConfigMap':
      return `/api/v1/namespaces/${ns}/configmaps`;
    case 'Pod':
      return `/api/v1/namespaces/${ns}/pods`;
    case 'NetworkPolicy':
      return `/apis/networking.k8s.io/v1/namespaces/${ns}/networkpolicies`;
  }
}

function objectPath(namespace: string, object: RunObject): string {
  return `${collectionPath(namespace, object)}/${encodeURIComponent(object.metadata?.name ?? '')}`;
}

function containerStatus(pod: PodState, name: string, init = false): ContainerStatus | undefined {
  return (init ? pod.status?.initContainerStatuses : pod.status?.containerStatuses)?.find((c) => c.name === name);
}

/** Why a pod cannot go on, or null while it may still get there. */
function stuck(pod: PodState): string | null {
  for (const c of [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]) {
    const waiting = c.state?.waiting;
    if (waiting?.reason && STUCK_REASONS.has(waiting.reason)) {
      return `${c.name}: ${waiting.reason}${waiting.message ? ` (${waiting.message})` : ''}`;
    }
  }
  return null;
}

/**
 * Watches one pod until `decide` returns a value (or the stream is aborted). Re-watches from the last
 * resourceVersion when the server ends the stream, as API servers do after their watch timeout.
 */
async function watchPod<T>(
  api: KubeApi,
  namespace: string,
  name: string,
  decide: (pod: PodState) => T | undefined,
  signal: AbortSignal,
): Promise<T | undefined> {
  const controller = new AbortController();
  const abort = () => controller.abort();
  signal.addEventListener('abort', abort);
  let result: T | undefined;
  let resourceVersion = '';
  try {
    while (result === undefined && !controller.signal.aborted) {
      const query = new URLSearchParams({
        watch: 'true',
        fieldSelector: `metadata.name=${name}`,
        allowWatchBookmarks: 'true',
        ...(resourceVersion ? { resourceVersion } : {}),
      });
      let gone = false;
      await api.stream(
        `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods?${query.toString()}`,
        lineSplitter((line) => {
          if (!line.trim() || result !== undefined) return;
          const event = JSON.parse(line) as WatchEvent<PodState & { code?: number }>;
          if (event.type === 'ERROR') {
            // 410 Gone: the version is too old; start over from the current state.
            gone = true;
            resourceVersion = '';
            return;
          }
          resourceVersion = event.object.metadata?.resourceVersion ?? resourceVersion;
          if (event.type === 'DELETED') {
            result = decide({ ...event.object, status: { ...event.object.status, phase: 'Deleted' } });
          } else if (event.type !== 'BOOKMARK') {
            result = decide(event.object);
          }
          if (result !== undefined) controller.abort();
        }),
        controller.signal,
      );
      if (!gone && result === undefined && !controller.signal.aborted) await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    signal.removeEventListener('abort', abort);
  }
  return result;
}

function logPath(namespace: string, pod: string, container: string): string {
  const query = new URLSearchParams({ container, follow: 'true' });
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/log?${query.toString()}`;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new SandboxError(`${what} within ${Math.round(ms / 1000)}s`)), ms);
    }),
  ]);
}

export async function runKubeSandbox(req: KubeRunRequest): Promise<ContainerOutcome> {
  const { api, plan, log } = req;
  const ns = plan.namespace;
  const names = kubeNames(plan.runId);
  const created: RunObject[] = [];
  const background = new AbortController();
  const streams: Array<Promise<void>> = [];
  const create = async (object: RunObject): Promise<PodState> => {
    const result = await api.request<PodState>('POST', collectionPath(ns, object), object);
    created.push(object);
    log.debug(`created ${object.kind} ${object.metadata?.name}`);
    return result;
  };
  const remove = async (object: RunObject, gracePeriodSeconds?: number) => {
    await api.delete(objectPath(ns, object), gracePeriodSeconds === undefined ? {} : { gracePeriodSeconds });
  };
  const startTimeoutMs = req.startTimeoutMs ?? 180_000;
  let proxyExited: (why: string) => void = () => undefined;
  const proxyFailure = new Promise<string>((resolve) => (proxyExited = resolve));
  let canaryHit: (from: string) => void = () => undefined;
  const canaryFailure = new Promise<string>((resolve) => (canaryHit = resolve));

  try {
    const stopped = new Promise<never>((_, reject) => {
      const onStop = () => reject(new SandboxError(`interrupted by ${String(req.stop.reason)}`));
      if (req.stop.aborted) onStop();
      req.stop.addEventListener('abort', onStop, { once: true });
    });
    stopped.catch(() => undefined);
    const step = <T>(promise: Promise<T>) => Promise.race([promise, stopped]);

    await step(create(proxyConfigSecret(plan, req.secrets.proxyConfigJson)));
    await step(create(sandboxEnvSecret(plan, req.secrets.sandboxEnv)));
    await step(create(caConfigMap(plan)));
    for (const policy of networkPolicies(plan)) await step(create(policy));
    const proxy = proxyPod(plan);
    await step(create(proxy));

    // The proxy pod: running (or why not), then its ready line on the log.
    const running = await step(
      withTimeout(
        watchPod(
          api,
          ns,
          names.proxyPod,
          (pod) => {
            if (pod.status?.phase === 'Running' && pod.status.podIP) return { ip: pod.status.podIP };
            const why = stuck(pod);
            if (why) return { error: why };
            if (['Failed', 'Succeeded', 'Deleted'].includes(pod.status?.phase ?? '')) {
              return {
                error: `the proxy pod ended (${pod.status?.phase}${pod.status?.message ? `: ${pod.status.message}` : ''})`,
              };
            }
            return undefined;
          },
          background.signal,
        ),
        startTimeoutMs,
        'the proxy pod did not start',
      ),
    );
    if (!running || 'error' in running) throw new SandboxError(`the proxy pod could not start: ${running?.error}`);
    const proxyIp = running.ip;

    let ready: () => void = () => undefined;
    const readyLine = new Promise<void>((resolve) => (ready = resolve));
    streams.push(
      api
        .stream(
          logPath(ns, names.proxyPod, 'proxy'),
          lineSplitter((line) => {
            const decoded = decodeProxyLine(line);
            if (decoded.kind === 'ready') ready();
            else if (decoded.kind === 'event') req.onNetworkEvent(decoded);
            else if (decoded.kind === 'other') {
              const canary = decodeCanaryLine(line);
              if (canary) canaryHit(canary.from);
            }
          }),
          background.signal,
        )
        .then(
          () => proxyExited('the proxy exited'),
          (err: Error) => proxyExited(`the proxy's log ended: ${err.message}`),
        ),
    );
    await step(
      Promise.race([
        withTimeout(readyLine, 30_000, 'the proxy did not report ready'),
        proxyFailure.then((why) => Promise.reject(new SandboxError(`the proxy failed to start: ${why}`))),
      ]),
    );
    log.info(`proxy pod ${names.proxyPod} ready at ${proxyIp}`);
    // Read once at start-up: the CA key and the real credentials need not wait in etcd for the rest of the run.
    const configSecret = created.find((o) => o.kind === 'Secret' && o.metadata?.name === names.proxyConfig);
    if (configSecret) {
      await step(remove(configSecret));
      created.splice(created.indexOf(configSecret), 1);
    }

    const sandbox = sandboxPod(plan, proxyIp);
    await step(create(sandbox));

    type Phase = { kind: 'running' } | { kind: 'done'; pod: PodState } | { kind: 'refused'; why: string };
    const started = await step(
      withTimeout(
        watchPod<Phase>(
          api,
          ns,
          names.sandboxPod,
          (pod) => {
            const probe = containerStatus(pod, 'netpolicy-probe', true)?.state?.terminated;
            if (probe && probe.exitCode !== 0) {
              return { kind: 'refused', why: probe.message?.trim() || `the probe exited ${probe.exitCode}` };
            }
            const main = containerStatus(pod, 'sandbox')?.state;
            if (main?.terminated) return { kind: 'done', pod };
            if (main?.running) return { kind: 'running' };
            const why = stuck(pod);
            if (why) return { kind: 'refused', why };
            if (['Failed', 'Succeeded', 'Deleted'].includes(pod.status?.phase ?? '')) {
              return { kind: 'refused', why: `the sandbox pod ended (${pod.status?.reason ?? pod.status?.phase})` };
            }
            return undefined;
          },
          background.signal,
        ),
        startTimeoutMs,
        'the sandbox pod did not start',
      ),
    );
    if (!started || started.kind === 'refused') {
      throw new SandboxError(`the sandbox did not start, the command was not run: ${started?.why}`);
    }

    // The command runs (or already ran): its log is the command's output, stdout and stderr interleaved.
    const commandLog = api.stream(
      logPath(ns, names.sandboxPod, 'sandbox'),
      (chunk) => req.stdout.write(chunk),
      background.signal,
    );
    commandLog.catch(() => undefined);
    const finished =
      started.kind === 'done'
        ? Promise.resolve(started.pod)
        : watchPod(
            api,
            ns,
            names.sandboxPod,
            (pod) => {
              const main = containerStatus(pod, 'sandbox')?.state;
              if (main?.terminated) return pod;
              if (['Failed', 'Succeeded', 'Deleted'].includes(pod.status?.phase ?? '')) return pod;
              return undefined;
            },
            background.signal,
          );
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      if (req.timeoutSeconds !== undefined) timer = setTimeout(() => resolve('timeout'), req.timeoutSeconds * 1000);
    });
    const signalled = new Promise<StopSignal>((resolve) => {
      if (req.stop.aborted) resolve(req.stop.reason as StopSignal);
      req.stop.addEventListener('abort', () => resolve(req.stop.reason as StopSignal), { once: true });
    });
    const outcome = await Promise.race([
      finished.then((pod) =>
        pod ? { kind: 'finished' as const, pod } : { kind: 'failure' as const, reason: 'the sandbox pod watch ended' },
      ),
      timedOut.then(() => ({ kind: 'timeout' as const })),
      signalled.then((signal) => ({ kind: 'signal' as const, signal })),
      proxyFailure.then((reason) => ({ kind: 'failure' as const, reason })),
      canaryFailure.then((from) => ({
        kind: 'failure' as const,
        reason: `${from} reached the proxy pod's canary port, which the sandbox's NetworkPolicy forbids: the policy is not enforced`,
      })),
    ]);
    clearTimeout(timer);
    if (outcome.kind !== 'finished') {
      // The command must not go on: delete its pod (SIGTERM, then SIGKILL after the grace period).
      await remove(sandbox, outcome.kind === 'signal' ? 5 : 0).catch(() => undefined);
      if (outcome.kind === 'timeout') return { kind: 'timeout', seconds: req.timeoutSeconds ?? 0 };
      if (outcome.kind === 'signal') return { kind: 'signal', signal: outcome.signal };
      return { kind: 'sandbox-failure', reason: outcome.reason };
    }
    // Everything the command wrote, before the verdict.
    await withTimeout(commandLog, 10_000, 'the command log did not end').catch(() => undefined);
    const terminated = containerStatus(outcome.pod, 'sandbox')?.state?.terminated;
    if (!terminated) {
      return {
        kind: 'sandbox-failure',
        reason: `the sandbox pod ended without an exit code (${outcome.pod.status?.reason ?? outcome.pod.status?.phase})`,
      };
    }
    return { kind: 'exited', code: terminated.exitCode, oomKilled: terminated.reason === 'OOMKilled' };
  } finally {
    // The proxy first, with its grace period, so it flushes its last log lines before the stream ends.
    const proxyObject = created.find((o) => o.kind === 'Pod' && o.metadata?.name === names.proxyPod);
    const rest = created.filter((o) => o !== proxyObject).reverse();
    for (const object of rest.filter((o) => o.kind === 'Pod')) await remove(object, 0).catch(reportCleanup(log));
    if (proxyObject) {
      await remove(proxyObject).catch(reportCleanup(log));
      await withTimeout(Promise.all(streams), 10_000, 'proxy log').catch(() => undefined);
    }
    background.abort();
    for (const object of rest.filter((o) => o.kind !== 'Pod')) await remove(object).catch(reportCleanup(log));
  }
}

function reportCleanup(log: Logger) {
  return (err: unknown) => log.warn(`cleanup: ${err instanceof Error ? err.message : String(err)}`);
}

/**
 * The runner's own pod, when airlock runs in one: owner of the run's objects, node and workspace volume. Not found
 * is an answer (airlock runs in some other pod, or outside this namespace); any other failure — above all a 403
 * for a missing `get pods` — is the run's failure, with the RBAC hint.
 */
export async function readRunnerPod(api: KubeApi, namespace: string, name: string): Promise<IPod | null> {
  try {
    return await api.request<IPod>(
      'GET',
      `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`,
    );
  } catch (err) {
    if (err instanceof KubeApiError && err.status === 404) return null;
    throw err;
  }
}
