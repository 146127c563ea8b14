/**
 * Labels on every resource airlock creates (containers here; networks and the proxy container via the same
 * helpers), so that a later run can remove what a run killed with SIGKILL left behind — and only that: resources
 * from a live airlock process, another host, or not created by airlock are never touched (unlike Airut, whose
 * fixed names make concurrent runs clobber each other, airut-behaviour.md item 89).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { processStartTime } from '../host/process-start-time.js';

export const LABEL = {
  run: 'io.airlock.run',
  ownerPid: 'io.airlock.owner-pid',
  /** The owner's start time (clock ticks since boot), so a recycled pid does not look like a live owner. */
  ownerStart: 'io.airlock.owner-start',
  /** Host name of the owner: another machine (or container) sharing the engine has its own pid space. */
  ownerHost: 'io.airlock.owner-host',
  created: 'io.airlock.created',
} as const;

export interface RunIdentity {
  runId: string;
  ownerPid: number;
  ownerStart: string;
  ownerHost: string;
  createdAt: Date;
}

export function newRunIdentity(now: Date = new Date()): RunIdentity {
  return {
    runId: randomBytes(6).toString('hex'),
    ownerPid: process.pid,
    ownerStart: processStartTime(process.pid) ?? '',
    ownerHost: hostname(),
    createdAt: now,
  };
}

export function resourceLabels(identity: RunIdentity): Record<string, string> {
  return {
    [LABEL.run]: identity.runId,
    [LABEL.ownerPid]: String(identity.ownerPid),
    [LABEL.ownerStart]: identity.ownerStart,
    [LABEL.ownerHost]: identity.ownerHost,
    [LABEL.created]: identity.createdAt.toISOString(),
  };
}

/** `--label k=v` pairs for `create`/`run`/`network create`, sorted for a deterministic argv. */
export function resourceLabelArgs(identity: RunIdentity): string[] {
  const labels = resourceLabels(identity);
  return Object.keys(labels)
    .sort()
    .flatMap((key) => ['--label', `${key}=${labels[key]}`]);
}

/** Name for a resource of this run, e.g. `airlock-run-<id>`; unique per run so concurrent runs never collide. */
export function resourceName(kind: string, identity: RunIdentity): string {
  return `airlock-${kind}-${identity.runId}`;
}

export interface Liveness {
  host: string;
  /** The start time of `pid` if it is running, else null. */
  startTimeOf(pid: number): string | null;
}

/**
 * Whether a labelled resource is an orphan: created by an airlock process on this host that is no longer running.
 * Anything without a complete, well-formed set of airlock labels is not ours and never counts as an orphan.
 */
export function isOrphan(labels: Record<string, string> | null | undefined, here: Liveness): boolean {
  if (!labels || !labels[LABEL.run]) return false;
  const pidText = labels[LABEL.ownerPid];
  if (!pidText || !/^[1-9]\d*$/.test(pidText)) return false;
  if (labels[LABEL.ownerHost] !== here.host) return false;
  const running = here.startTimeOf(Number(pidText));
  if (running === null) return true;
  const recorded = labels[LABEL.ownerStart];
  // Same pid, different start time: the owner died and the pid was reused.
  return recorded !== undefined && recorded !== '' && recorded !== running;
}

export const localLiveness: Liveness = {
  host: hostname(),
  startTimeOf: processStartTime,
};
