/**
 * A fake Kubernetes API server on 127.0.0.1 for the engine's tests: real HTTP, the real request shapes (collections,
 * watches as newline-delimited JSON, followed logs as chunked bodies, DeleteOptions), and a scripted kubelet that
 * moves pods through their phases. It records every call so a test can check what the client actually sent.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedCall {
  method: string;
  path: string;
  authorization?: string;
  body?: Record<string, unknown>;
}

// The fake stores whatever JSON the client sends and moves it through states: untyped by nature.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

export interface ContainerScript {
  /** Log output, written once the container runs. */
  log?: string[];
  /** Exit code; undefined keeps the container running until its pod is deleted. */
  exitCode?: number;
  reason?: string;
  message?: string;
  /** A waiting reason instead of running (ErrImagePull…). */
  waiting?: string;
}

export interface PodScript {
  podIP?: string;
  init?: Record<string, ContainerScript>;
  containers: Record<string, ContainerScript>;
}

export interface FakeKubeApi {
  url: string;
  calls: RecordedCall[];
  objects: Map<string, Obj>;
  /** Append a line to a running container's log (canary hits, late events). */
  appendLog(pod: string, container: string, text: string): void;
  close(): Promise<void>;
}

const KINDS: Record<string, string> = {
  secrets: 'Secret',
  configmaps: 'ConfigMap',
  pods: 'Pod',
  networkpolicies: 'NetworkPolicy',
};

export async function startFakeKubeApi(
  script: (pod: Obj) => PodScript | null,
  seed: Obj[] = [],
  /** Requests (method and path) answered 403 Forbidden, as RBAC would. */
  forbidden?: RegExp,
): Promise<FakeKubeApi> {
  const objects = new Map<string, Obj>();
  const calls: RecordedCall[] = [];
  const watchers = new Map<string, Set<http.ServerResponse>>();
  const logs = new Map<string, { chunks: string[]; followers: Set<http.ServerResponse>; ended: boolean }>();
  let version = 1;
  const key = (kind: string, name: string) => `${kind}/${name}`;
  for (const o of seed) objects.set(key(o.kind, o.metadata.name), o);

  const notify = (pod: Obj, type: string) => {
    pod.metadata.resourceVersion = String(++version);
    for (const res of watchers.get(pod.metadata.name) ?? []) res.write(JSON.stringify({ type, object: pod }) + '\n');
    if (type === 'DELETED') {
      for (const res of watchers.get(pod.metadata.name) ?? []) res.end();
      watchers.delete(pod.metadata.name);
    }
  };
  const logOf = (pod: string, container: string) => {
    const k = `${pod}/${container}`;
    if (!logs.has(k)) logs.set(k, { chunks: [], followers: new Set(), ended: false });
    return logs.get(k)!;
  };
  const writeLog = (pod: string, container: string, text: string) => {
    const l = logOf(pod, container);
    l.chunks.push(text);
    for (const res of l.followers) res.write(text);
  };
  const endLog = (pod: string, container: string) => {
    const l = logOf(pod, container);
    l.ended = true;
    for (const res of l.followers) res.end();
    l.followers.clear();
  };
  const status = (pod: Obj, init: boolean, name: string, state: Obj) => {
    const list = init ? 'initContainerStatuses' : 'containerStatuses';
    pod.status[list] = [...(pod.status[list] ?? []).filter((c: Obj) => c.name !== name), { name, state }];
  };
  const later = (ms: number) => new Promise((r) => setTimeout(r, ms));

  /** The kubelet: init containers in order, then the containers; each runs its script. */
  async function kubelet(pod: Obj, s: PodScript): Promise<void> {
    const name = pod.metadata.name;
    const alive = () => objects.get(key('Pod', name)) === pod;
    await later(10);
    pod.status = { phase: 'Pending' };
    notify(pod, 'MODIFIED');
    for (const [c, cs] of Object.entries(s.init ?? {})) {
      await later(10);
      if (!alive()) return;
      status(pod, true, c, { terminated: { exitCode: cs.exitCode ?? 0, message: cs.message } });
      if ((cs.exitCode ?? 0) !== 0) {
        pod.status.phase = 'Failed';
        notify(pod, 'MODIFIED');
        return;
      }
      notify(pod, 'MODIFIED');
    }
    await later(10);
    if (!alive()) return;
    for (const [c, cs] of Object.entries(s.containers)) {
      if (cs.waiting) {
        status(pod, false, c, { waiting: { reason: cs.waiting, message: 'scripted' } });
        notify(pod, 'MODIFIED');
        return;
      }
      status(pod, false, c, { running: { startedAt: new Date().toISOString() } });
    }
    pod.status.phase = 'Running';
    if (s.podIP) pod.status.podIP = s.podIP;
    notify(pod, 'MODIFIED');
    for (const [c, cs] of Object.entries(s.containers)) for (const line of cs.log ?? []) writeLog(name, c, line);
    const ending = Object.entries(s.containers).filter(([, cs]) => cs.exitCode !== undefined);
    if (ending.length === 0) return;
    await later(20);
    if (!alive()) return;
    for (const [c, cs] of ending) {
      status(pod, false, c, { terminated: { exitCode: cs.exitCode, reason: cs.reason ?? 'Completed' } });
      endLog(name, c);
    }
    pod.status.phase = ending.every(([, cs]) => cs.exitCode === 0) ? 'Succeeded' : 'Failed';
    notify(pod, 'MODIFIED');
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const text = Buffer.concat(chunks).toString('utf8');
      const body = text ? (JSON.parse(text) as Obj) : undefined;
      calls.push({
        method: req.method ?? '',
        path: `${url.pathname}${url.search}`,
        ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
        ...(body ? { body } : {}),
      });
      const m =
        /^\/(?:api\/v1|apis\/networking\.k8s\.io\/v1)\/namespaces\/([^/]+)\/(\w+)(?:\/([^/]+))?(?:\/(log))?$/.exec(
          url.pathname,
        );
      const reply = (code: number, obj: unknown) => {
        res.writeHead(code, { 'content-type': 'application/json' });
        res.end(JSON.stringify(obj));
      };
      if (forbidden?.test(`${req.method} ${url.pathname}`)) {
        return reply(403, { kind: 'Status', message: 'forbidden by the test', reason: 'Forbidden' });
      }
      if (!m) return reply(404, { kind: 'Status', message: 'no route', reason: 'NotFound' });
      const [, , resource, name, sub] = m;
      const kind = KINDS[resource!];
      if (!kind) return reply(404, { kind: 'Status', message: 'unknown resource', reason: 'NotFound' });
      if (req.method === 'POST' && !name) {
        const obj = body!;
        if (objects.has(key(kind, obj.metadata.name))) {
          return reply(409, { kind: 'Status', message: 'already exists', reason: 'AlreadyExists' });
        }
        obj.metadata.uid = `uid-${obj.metadata.name}`;
        obj.metadata.resourceVersion = String(++version);
        objects.set(key(kind, obj.metadata.name), obj);
        reply(201, obj);
        if (kind === 'Pod') {
          const s = script(obj);
          if (s) void kubelet(obj, s);
        }
        return;
      }
      if (req.method === 'GET' && kind === 'Pod' && !name && url.searchParams.get('watch') === 'true') {
        const target = /^metadata\.name=(.+)$/.exec(url.searchParams.get('fieldSelector') ?? '')?.[1];
        if (!target) return reply(400, { kind: 'Status', message: 'fieldSelector required here' });
        res.writeHead(200, { 'content-type': 'application/json' });
        const current = objects.get(key('Pod', target));
        if (current) res.write(JSON.stringify({ type: 'ADDED', object: current }) + '\n');
        if (!watchers.has(target)) watchers.set(target, new Set());
        watchers.get(target)!.add(res);
        res.on('close', () => watchers.get(target)?.delete(res));
        return;
      }
      if (req.method === 'GET' && sub === 'log') {
        const pod = objects.get(key('Pod', name!));
        const container = url.searchParams.get('container') ?? '';
        const st = pod?.status?.containerStatuses?.find((c: Obj) => c.name === container)?.state;
        if (!pod || !st || st.waiting) {
          return reply(400, { kind: 'Status', message: `container ${container} is waiting to start` });
        }
        const l = logOf(name!, container);
        res.writeHead(200, { 'content-type': 'text/plain' });
        for (const c of l.chunks) res.write(c);
        if (l.ended || url.searchParams.get('follow') !== 'true') return res.end();
        l.followers.add(res);
        res.on('close', () => l.followers.delete(res));
        return;
      }
      if (req.method === 'GET' && name) {
        const obj = objects.get(key(kind, name));
        return obj ? reply(200, obj) : reply(404, { kind: 'Status', message: 'not found', reason: 'NotFound' });
      }
      if (req.method === 'DELETE' && name) {
        const obj = objects.get(key(kind, name));
        if (!obj) return reply(404, { kind: 'Status', message: 'not found', reason: 'NotFound' });
        objects.delete(key(kind, name));
        reply(200, { kind: 'Status', status: 'Success' });
        if (kind === 'Pod') {
          for (const k of [...logs.keys()]) if (k.startsWith(`${name}/`)) endLog(name, k.slice(name.length + 1));
          notify(obj, 'DELETED');
        }
        return;
      }
      reply(405, { kind: 'Status', message: 'not supported by the fake' });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    objects,
    appendLog: writeLog,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
