/**
 * What the engine says about itself (`podman info --format json`, `docker info --format '{{json .}}'`), reduced to
 * the facts airlock acts on: rootless or not, the cgroup version, manager and controllers, the runtime, the storage
 * driver and the rootless network helper. Parsing is pure and tolerant (fields come and go between engine
 * versions; an absent one reads as "unknown", never as a guess), so every world's real output is a unit-test
 * fixture (test/fixtures/engine-info/).
 */
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
