/**
 * The seam between the container and its network. `airlock run` opens a NetworkSession before the container starts
 * and closes it in `finally`; the container gets the session's arguments, environment and mounts. The network
 * sandbox (internal network + proxy container + CA trust) plugs in here as another implementation of
 * `NetworkSession`; until it exists, `network_sandbox: true` refuses to run rather than run unprotected.
 */
import { SandboxError } from '../errors.js';
import type { Engine } from '../engine/engine.js';
import type { BindMount } from '../engine/run-args.js';
import type { LoadedPolicy } from '../config/types.js';
import type { PreparedCredentials } from '../secrets/prepare.js';
import type { RunIdentity } from './labels.js';
import type { Logger } from './log.js';

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
}

export interface NetworkSessionRequest {
  engine: Engine;
  identity: RunIdentity;
  policy: LoadedPolicy;
  credentials: PreparedCredentials;
  log: Logger;
  /** Parsed values of the network flags (`--network-log`, …), passed through from the command line. */
  flags: Record<string, string | boolean | undefined>;
  /** Aborted on SIGINT/SIGTERM before the command starts: stop starting the proxy. */
  signal?: AbortSignal;
}

const never = new Promise<string>(() => undefined);

/** `network_sandbox: false`: the engine's default network, unrestricted egress, no proxy. */
export function unrestrictedNetwork(log: Logger): NetworkSession {
  log.warn('network_sandbox is false: the command runs with unrestricted network access and no proxy');
  return { runArgs: [], env: {}, mounts: [], failure: never, close: () => Promise.resolve() };
}

export type NetworkSessionFactory = (request: NetworkSessionRequest) => Promise<NetworkSession>;

/** The sandboxed network; replaced by the proxy-backed session when the network sandbox lands. */
export const openSandboxedNetwork: NetworkSessionFactory = () =>
  Promise.reject(
    new SandboxError(
      'the network sandbox is not available in this build of airlock, so the command was not run. ' +
        'Set `network_sandbox: false` in sandbox.yaml to run it with unrestricted network access instead.',
    ),
  );

export async function openNetworkSession(request: NetworkSessionRequest): Promise<NetworkSession> {
  if (!request.policy.sandbox.network_sandbox) return unrestrictedNetwork(request.log);
  return openSandboxedNetwork(request);
}
