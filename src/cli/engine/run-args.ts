/**
 * The `<engine> run` argv for the sandbox container, built as data so every hardening flag is unit-tested. Pure: no
 * I/O. Values of environment variables never appear here, only their names (`-e NAME`); the engine copies each
 * value from its own environment, so `ps` shows names only.
 */
import { DISK_LIMITED_SCRATCH, sizeBytes } from '../../protocol/sandbox-config.js';
import { UsageError } from '../errors.js';
import type { EngineKind } from './engine.js';

export interface BindMount {
  source: string;
  target: string;
  readOnly: boolean;
}

export interface ContainerLimits {
  /** e.g. `2g`; swap is set to the same value so there is no extra swap. */
  memory?: string;
  /**
   * e.g. `2g`: the image is mounted read-only and each of DISK_LIMITED_SCRATCH becomes a tmpfs of this size, so
   * nothing the command writes outside its mounts reaches the host's disk.
   */
  disk?: string;
  cpus?: number;
  /** Absent only when the engine is known not to enforce it here (the run was warned; see limit-enforcement.ts). */
  pidsLimit?: number;
  /** Open-file and process rlimits, soft = hard; above the host's limits the runtime refuses to start. */
  nofile: number;
  nproc: number;
}

export interface ContainerSpec {
  engine: EngineKind;
  name: string;
  image: string;
  command: string[];
  labels: Record<string, string>;
  /** Variable names only; their values go in the engine process's environment. */
  envNames: string[];
  mounts: BindMount[];
  workdir: string;
  limits: ContainerLimits;
  /** Keep stdin open (`-i`); always on so piped input reaches the command. */
  interactive: boolean;
  /** Allocate a TTY (`-t`); only when airlock itself has one. */
  tty: boolean;
  /** Arguments contributed by the network session (`--network`, `--dns`, …), placed before the image. */
  networkArgs: string[];
  /** OCI runtime override (`--runtime`), only when the engine's default cannot work on this host. */
  runtime?: string;
  /**
   * Path of airlock's seccomp profile (engine/seccomp-profile.ts), which replaces the engine's default one. Required:
   * the sandbox never runs under the engine's default, which lets Podman containers create user namespaces.
   */
  seccompProfile: string;
}

/**
 * Capabilities kept after `--cap-drop=ALL`: what a package manager or build running as root inside the container
 * needs to own, chmod and switch to the files and users it creates. Each is justified in docs/container.md.
 */
export const KEPT_CAPABILITIES = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'SETGID', 'SETUID'] as const;

export const DEFAULT_PIDS_LIMIT = 4096;

/** Sorted so the argv (and any log of it) is deterministic. */
function labelArgs(labels: Record<string, string>): string[] {
  return Object.keys(labels)
    .sort()
    .flatMap((key) => ['--label', `${key}=${labels[key]}`]);
}

export function mountArg(mount: BindMount): string {
  if (mount.source.includes(':') || mount.target.includes(':')) {
    // `-v` splits on ':'; a path containing one would silently mount something else.
    throw new UsageError(`a mount path cannot contain ':' (${mount.source} → ${mount.target})`);
  }
  return `${mount.source}:${mount.target}:${mount.readOnly ? 'ro' : 'rw'}`;
}

/** Mode of each scratch tmpfs: world-writable sticky for the temp dirs, as the image would have them. */
const SCRATCH_MODES: Record<(typeof DISK_LIMITED_SCRATCH)[number], string> = {
  '/tmp': '1777',
  '/var/tmp': '1777',
  '/run': '755',
  '/root': '700',
  '/home': '755',
};

/**
 * `--read-only` plus one sized tmpfs per scratch directory. `exec` because builds run what they put in /tmp (both
 * engines default `--tmpfs` to noexec); a scratch directory that is itself a mount target is left to that mount.
 * The size is in bytes: tmpfs does not read the `b` suffix the config allows.
 */
export function diskLimitArgs(engine: EngineKind, disk: string, mounts: BindMount[]): string[] {
  const targets = new Set(mounts.map((m) => m.target.replace(/\/+$/, '')));
  const bytes = sizeBytes(disk);
  // Podman would add its own unsized tmpfs on /run, /tmp and /var/tmp to a read-only container.
  const args = ['--read-only', ...(engine === 'podman' ? ['--read-only-tmpfs=false'] : [])];
  for (const dir of DISK_LIMITED_SCRATCH) {
    if (targets.has(dir)) continue;
    args.push('--tmpfs', `${dir}:rw,exec,nosuid,nodev,size=${bytes},mode=${SCRATCH_MODES[dir]}`);
  }
  return args;
}

export function buildRunArgs(spec: ContainerSpec): string[] {
  const args = ['run', '--name', spec.name, ...labelArgs(spec.labels)];
  // Never reach a registry: the image is built or loaded locally, and a typo must not fetch something else.
  args.push('--pull=never');
  // Output is streamed to airlock; storing it in the engine's log would keep a second copy of everything.
  args.push('--log-driver=none');
  args.push('--init');
  args.push('--cap-drop=ALL', ...KEPT_CAPABILITIES.map((cap) => `--cap-add=${cap}`));
  args.push('--security-opt=no-new-privileges');
  args.push(`--security-opt=seccomp=${spec.seccompProfile}`);
  if (spec.limits.pidsLimit !== undefined) args.push(`--pids-limit=${spec.limits.pidsLimit}`);
  args.push(`--ulimit=nofile=${spec.limits.nofile}:${spec.limits.nofile}`);
  args.push(`--ulimit=nproc=${spec.limits.nproc}:${spec.limits.nproc}`);
  if (spec.limits.memory !== undefined) {
    args.push(`--memory=${spec.limits.memory}`, `--memory-swap=${spec.limits.memory}`);
  }
  if (spec.limits.disk !== undefined) args.push(...diskLimitArgs(spec.engine, spec.limits.disk, spec.mounts));
  if (spec.limits.cpus !== undefined) args.push(`--cpus=${spec.limits.cpus}`);
  if (spec.runtime !== undefined) args.push(`--runtime=${spec.runtime}`);
  if (spec.interactive) args.push('--interactive');
  if (spec.tty) args.push('--tty');
  args.push(`--workdir=${spec.workdir}`);
  for (const name of spec.envNames) args.push('--env', name);
  for (const mount of spec.mounts) args.push('--volume', mountArg(mount));
  args.push(...spec.networkArgs);
  args.push(spec.image, ...spec.command);
  return args;
}
