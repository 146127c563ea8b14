/**
 * What the engine says about itself (`podman info --format json`, `docker info --format '{{json .}}'`), reduced to
 * the facts airlock acts on: rootless or not, the cgroup version, manager and controllers, the runtime, the storage
 * driver and the rootless network helper. Parsing is pure and tolerant (fields come and go between engine
 * versions; an absent one reads as "unknown", never as a guess), so every world's real output is a unit-test
 * fixture (test/fixtures/engine-info/).
 */
import { accessSync, constants as fsConstants, readFileSync } from 'node:fs';
import { z } from 'zod';
import { callEngine, lastLines, type Engine, type EngineKind } from './engine.js';

export interface EngineFacts {
  engine: EngineKind;
  version: string;
  rootless: boolean;
  /** null when the engine does not say. */
  cgroupVersion: 1 | 2 | null;
  /** `systemd`, `cgroupfs`, or Docker's `none` (no cgroups at all); '' when not reported. */
  cgroupManager: string;
  /**
   * Podman: the controllers it can use for containers — on rootless cgroup v2 the ones delegated to the user, on
   * rootless cgroup v1 none. null when not reported (and always for Docker, which reports `limitSupport`).
   */
  cgroupControllers: string[] | null;
  /** Docker: which limits the daemon says it can apply; null for Podman. */
  limitSupport: { memory: boolean; swap: boolean; pids: boolean; cpus: boolean } | null;
  /** The default OCI runtime (`runc`, `crun`). */
  runtime: string;
  /** `overlay`, `vfs`, `overlay2`, … */
  storageDriver: string;
  /** Rootless Podman's user-mode network helper: `slirp4netns` (Podman 4) or `pasta` (Podman 5); null otherwise. */
  rootlessNetwork: 'slirp4netns' | 'pasta' | null;
  /** Docker's own warnings about this host (`WARNING: No swap limit support`, …). */
  warnings: string[];
  /**
   * Whether this process's own cgroup (cgroup v2) is writable by its user — delegated. Not in any `info`: read from
   * the host for a local engine (null when unknown), it decides rootless Podman with the cgroupfs manager.
   */
  cgroupWritable: boolean | null;
}

const text = z.string().catch('');
const flag = z.boolean().catch(false);

const PodmanInfoSchema = z.looseObject({
  host: z
    .looseObject({
      cgroupManager: text.optional(),
      cgroupVersion: text.optional(),
      cgroupControllers: z.array(z.string()).nullish().catch(null),
      ociRuntime: z.looseObject({ name: text.optional() }).nullish().catch(null),
      security: z.looseObject({ rootless: flag.optional() }).nullish().catch(null),
      rootlessNetworkCmd: text.optional(),
      pasta: z.looseObject({ executable: text.optional() }).nullish().catch(null),
      slirp4netns: z.looseObject({ executable: text.optional() }).nullish().catch(null),
    })
    .catch({}),
  store: z.looseObject({ graphDriverName: text.optional() }).catch({}),
  version: z.looseObject({ Version: text.optional() }).catch({}),
});

const DockerInfoSchema = z.looseObject({
  ServerVersion: text.optional(),
  CgroupVersion: text.optional(),
  CgroupDriver: text.optional(),
  SecurityOptions: z.array(z.string()).nullish().catch(null),
  MemoryLimit: flag.optional(),
  SwapLimit: flag.optional(),
  PidsLimit: flag.optional(),
  CpuCfsQuota: flag.optional(),
  DefaultRuntime: text.optional(),
  Driver: text.optional(),
  Warnings: z.array(z.string()).nullish().catch(null),
});

function cgroupVersionOf(value: string | undefined): 1 | 2 | null {
  const v = (value ?? '').replace(/^v/, '');
  return v === '1' ? 1 : v === '2' ? 2 : null;
}

export function parsePodmanInfo(json: unknown): EngineFacts {
  const info = PodmanInfoSchema.parse(json ?? {});
  const host = info.host;
  const rootless = host.security?.rootless ?? false;
  const declared = host.rootlessNetworkCmd;
  // Podman 5 names its helper; Podman 4 only lists the one it has (and its default is slirp4netns).
  const rootlessNetwork = !rootless
    ? null
    : declared === 'pasta' || declared === 'slirp4netns'
      ? declared
      : host.slirp4netns?.executable
        ? 'slirp4netns'
        : host.pasta?.executable
          ? 'pasta'
          : null;
  return {
    engine: 'podman',
    version: info.version.Version ?? '',
    rootless,
    cgroupVersion: cgroupVersionOf(host.cgroupVersion),
    cgroupManager: host.cgroupManager ?? '',
    cgroupControllers: host.cgroupControllers ?? null,
    limitSupport: null,
    runtime: host.ociRuntime?.name ?? '',
    storageDriver: info.store.graphDriverName ?? '',
    rootlessNetwork,
    warnings: [],
    cgroupWritable: null,
  };
}

export function parseDockerInfo(json: unknown): EngineFacts {
  const info = DockerInfoSchema.parse(json ?? {});
  return {
    engine: 'docker',
    version: info.ServerVersion ?? '',
    rootless: (info.SecurityOptions ?? []).some((o) => o.split(',').includes('name=rootless')),
    cgroupVersion: cgroupVersionOf(info.CgroupVersion),
    cgroupManager: info.CgroupDriver ?? '',
    cgroupControllers: null,
    limitSupport: {
      memory: info.MemoryLimit ?? false,
      swap: info.SwapLimit ?? false,
      pids: info.PidsLimit ?? false,
      cpus: info.CpuCfsQuota ?? false,
    },
    runtime: info.DefaultRuntime ?? '',
    storageDriver: info.Driver ?? '',
    rootlessNetwork: null,
    warnings: (info.Warnings ?? []).map((w) => w.replace(/^WARNING:\s*/, '')),
    cgroupWritable: null,
  };
}

export function parseEngineInfo(kind: EngineKind, json: unknown): EngineFacts {
  return kind === 'podman' ? parsePodmanInfo(json) : parseDockerInfo(json);
}

export const ENGINE_INFO_ARGS: Record<EngineKind, string[]> = {
  podman: ['info', '--format', 'json'],
  docker: ['info', '--format', '{{json .}}'],
};

export type EngineFactsResult = { ok: true; facts: EngineFacts } | { ok: false; reason: string };

/** Ask the engine; a failure is an answer ("could not tell"), never an exception, so each caller decides. */
export async function readEngineFacts(engine: Engine, signal?: AbortSignal): Promise<EngineFactsResult> {
  const r = await callEngine(engine, ENGINE_INFO_ARGS[engine.kind], signal ? { signal } : {}).catch((e: unknown) => ({
    code: -1,
    stdout: '',
    stderr: e instanceof Error ? e.message : String(e),
  }));
  if (r.code !== 0) {
    return { ok: false, reason: `\`${engine.kind} info\` failed: ${lastLines(r.stderr, 3) || `exit ${r.code}`}` };
  }
  try {
    return { ok: true, facts: parseEngineInfo(engine.kind, JSON.parse(r.stdout)) };
  } catch (e) {
    return { ok: false, reason: `\`${engine.kind} info\` printed no JSON: ${(e as Error).message}` };
  }
}

/**
 * What the host itself says about cgroups, for the cases where that decides the limits question as surely as the
 * engine's report would and `podman info` (0.4–1 s, more than a whole bare `podman run` on a busy host) can be
 * skipped: local Podman as root (the controllers it can use are the host's enabled ones) and local rootless Podman
 * on cgroup v1 (no cgroup at all). Rootless Podman on cgroup v2 depends on its cgroup manager and on delegation —
 * only the engine knows — and Docker answers `info` from its daemon in milliseconds: both are asked.
 */
export interface HostCgroupState {
  euid: number;
  /** /sys/fs/cgroup/cgroup.controllers when /sys/fs/cgroup is the unified (v2) hierarchy, else null. */
  unifiedControllers: string[] | null;
  /** The text of /proc/cgroups. */
  procCgroups: string;
  /** Podman is reached through a service (CONTAINER_HOST, CONTAINER_CONNECTION): its host is not this one. */
  remote: boolean;
  /** cgroup v2: whether this process's own cgroup directory is writable by its user (delegated); else null. */
  ownCgroupWritable: boolean | null;
}

/** Controllers mounted as cgroup v1 hierarchies and enabled, from /proc/cgroups. Pure. */
export function v1Controllers(procCgroups: string): string[] {
  const out: string[] = [];
  for (const line of procCgroups.split('\n')) {
    if (line.startsWith('#')) continue;
    const [name, hierarchy, , enabled] = line.trim().split(/\s+/);
    if (name && Number(hierarchy) > 0 && enabled === '1') out.push(name);
  }
  return out;
}

/** Facts enough to judge the limits, from the host alone, or null when only the engine can tell. Pure. */
export function limitFactsFromHost(kind: EngineKind, host: HostCgroupState): EngineFacts | null {
  if (kind !== 'podman' || host.remote) return null;
  const rootless = host.euid !== 0;
  const cgroupVersion = host.unifiedControllers === null ? 1 : 2;
  if (rootless && cgroupVersion === 2) return null;
  return {
    engine: 'podman',
    version: '',
    rootless,
    cgroupVersion,
    cgroupManager: '',
    cgroupControllers: rootless ? [] : (host.unifiedControllers ?? v1Controllers(host.procCgroups)),
    limitSupport: null,
    runtime: '',
    storageDriver: '',
    rootlessNetwork: null,
    warnings: [],
    cgroupWritable: host.ownCgroupWritable,
  };
}

export function readHostCgroupState(env: NodeJS.ProcessEnv): HostCgroupState {
  const read = (path: string): string | null => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return null;
    }
  };
  const unified = read('/sys/fs/cgroup/cgroup.controllers');
  let ownCgroupWritable: boolean | null = null;
  const own = /^0::(\/.*)$/m.exec(read('/proc/self/cgroup') ?? '')?.[1];
  if (unified !== null && own !== undefined) {
    try {
      accessSync(`/sys/fs/cgroup${own === '/' ? '' : own}`, fsConstants.W_OK);
      ownCgroupWritable = true;
    } catch {
      ownCgroupWritable = false;
    }
  }
  return {
    euid: process.geteuid?.() ?? 0,
    unifiedControllers: unified === null ? null : unified.trim().split(/\s+/).filter(Boolean),
    procCgroups: read('/proc/cgroups') ?? '',
    remote: Boolean(env.CONTAINER_HOST || env.CONTAINER_CONNECTION),
    ownCgroupWritable,
  };
}

/** The facts a run judges its limits by: from the host when that is as sure (see above), else from the engine. */
export async function readLimitFacts(
  engine: Engine,
  env: NodeJS.ProcessEnv,
  signal?: AbortSignal,
): Promise<EngineFactsResult> {
  const host = readHostCgroupState(env);
  const fromHost = limitFactsFromHost(engine.kind, host);
  if (fromHost) return { ok: true, facts: fromHost };
  return withHostCgroup(await readEngineFacts(engine, signal), host);
}

/** The engine's report plus what only the host knows (a local engine's processes share this one's cgroup). */
export function withHostCgroup(answer: EngineFactsResult, host: HostCgroupState): EngineFactsResult {
  if (!answer.ok || host.remote) return answer;
  return { ok: true, facts: { ...answer.facts, cgroupWritable: host.ownCgroupWritable } };
}
