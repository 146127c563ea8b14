/**
 * Resource limits the container may be given on this host. Engines apply their own default ulimits (rootful Podman:
 * nofile 1048576, nproc 4194304); when those exceed what the host allows, the OCI runtime fails with "error setting
 * rlimit … operation not permitted". airlock therefore passes explicit limits: the host's own hard limit, further
 * capped by what the kernel can honour (fs.nr_open for files, kernel.pid_max for processes — some kernels and
 * sandboxes refuse an nproc above pid_max even when the hard limit is higher).
 */
import { readFileSync } from 'node:fs';

export interface HostLimits {
  nofile: number;
  nproc: number;
}

const NOFILE_CAP = 1_048_576;
const NPROC_CAP = 4_194_304;

/** The hard limit of one resource from /proc/self/limits text ("Max open files  20000  20000  files"). */
export function parseHardLimit(limits: string, resource: string): number | null {
  for (const line of limits.split('\n')) {
    if (!line.startsWith(resource)) continue;
    const fields = line.slice(resource.length).trim().split(/\s+/);
    const hard = fields[1];
    if (hard === undefined) return null;
    return hard === 'unlimited' ? Infinity : Number.isFinite(Number(hard)) ? Number(hard) : null;
  }
  return null;
}

function readNumber(path: string): number | null {
  try {
    const value = Number(readFileSync(path, 'utf8').trim());
    return Number.isFinite(value) && value > 0 ? value : null;
  } catch {
    return null;
  }
}

export function clampLimits(input: {
  hardNofile: number | null;
  hardNproc: number | null;
  nrOpen: number | null;
  pidMax: number | null;
}): HostLimits {
  const nofile = Math.min(input.hardNofile ?? NOFILE_CAP, input.nrOpen ?? NOFILE_CAP, NOFILE_CAP);
  const nproc = Math.min(input.hardNproc ?? NPROC_CAP, input.pidMax ?? NPROC_CAP, NPROC_CAP);
  return { nofile, nproc };
}

export function readHostLimits(): HostLimits {
  let limits = '';
  try {
    limits = readFileSync('/proc/self/limits', 'utf8');
  } catch {
    limits = '';
  }
  return clampLimits({
    hardNofile: parseHardLimit(limits, 'Max open files'),
    hardNproc: parseHardLimit(limits, 'Max processes'),
    nrOpen: readNumber('/proc/sys/fs/nr_open'),
    pidMax: readNumber('/proc/sys/kernel/pid_max'),
  });
}
