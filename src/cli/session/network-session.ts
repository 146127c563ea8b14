/**
 * The seam between the container and its network. `airlock run` opens a NetworkSession before the container starts
 * and closes it in `finally`; the container gets the session's arguments, environment and mounts. There are two:
 * the network sandbox (proxy-network.ts: internal network, proxy container, CA trust) and, for
 * `network_sandbox: false`, the engine's default network with no proxy at all.
 */
import type { LogRecord } from '../../protocol/network-log-records.js';
import type { Engine } from '../engine/engine.js';
import type { BindMount } from '../engine/run-args.js';
import type { LoadedPolicy } from '../config/types.js';
import type { PreparedCredentials } from '../secrets/prepare.js';
import type { RunIdentity } from './labels.js';
import type { Logger } from './log.js';
import type { NetworkCounts, NetworkLogOptions } from './network-log-sink.js';

export interface NetworkSession {
  /** Placed before the image in `<engine> run` (`--network …`, `--dns …`). Never a secret value. */
  runArgs: string[];
  /** Added to the container environment after the user's variables (so CA variables win). */
  env: Record<string, string>;
  mounts: BindMount[];
  /** Settles with a reason if the sandbox's infrastructure (the proxy) fails while the container runs. */
  failure: Promise<string>;
  /** Removes everything the session created; safe to call once in `finally`. */
  close(): Promise<void>;
  /** What the proxy saw, complete once `close()` has resolved (absent without a proxy). */
  counts?(): NetworkCounts;
}

export interface NetworkSessionRequest {
  engine: Engine;
  identity: RunIdentity;
  policy: LoadedPolicy;
  credentials: PreparedCredentials;
  log: Logger;
  networkLog: NetworkLogOptions;
  /** Where `--network-log-live` lines go. */
  stderr: NodeJS.WritableStream;
  /** Audit mode: the proxy lets policy refusals through and logs them `would_block` (docs/audit.md). */
  audit?: boolean;
  /** Sees every JSONL network-log record as it arrives (the end-of-run summary and audit mode's suggestion). */
  onRecord?: (record: LogRecord) => void;
}

const never = new Promise<string>(() => undefined);

/** `network_sandbox: false`: the engine's default network, unrestricted egress, no proxy. */
export function unrestrictedNetwork(log: Logger): NetworkSession {
  log.warn('network_sandbox is false: the command runs with unrestricted network access and no proxy');
  return { runArgs: [], env: {}, mounts: [], failure: never, close: () => Promise.resolve() };
}
