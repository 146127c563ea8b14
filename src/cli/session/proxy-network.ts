/**
 * Opens the network sandbox for one run (the topology and the proxy's argv and config are proxy-args.ts; the proxy
 * process is proxy-process.ts; its log is network-log-sink.ts). Any failure before the command starts throws and
 * undoes what was created (the command never runs without its sandbox); a proxy that dies during the run settles
 * `failure`.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import { callEngine, mustCallEngine, type Engine } from '../engine/engine.js';
import { readHostLimits } from '../engine/host-limits.js';
import { SandboxError } from '../errors.js';
import { allowWithinBridge } from './bridge-forwarding.js';
import { generateRunCa, writeSandboxTrust } from './ca.js';
import { resolveHostGateway } from './host-gateway.js';
import { resourceLabelArgs, resourceName, type RunIdentity } from './labels.js';
import type { Logger } from './log.js';
import { openNetworkLogSink } from './network-log-sink.js';
import type { NetworkSession, NetworkSessionRequest } from './network-session.js';
import {
  egressNetworkCreateArgs,
  proxyConfig,
  proxyLaunch,
  sandboxNetworkCreateArgs,
  sandboxNetworkRunArgs,
  type SandboxNetworks,
} from './proxy-args.js';
import { ensureProxyImage } from './proxy-image.js';
import { launchProxyContainer, superviseProxy } from './proxy-process.js';

/**
 * Every address of this machine (public ones included, loopback excluded: the guard refuses loopback anyway). An
 * allowed name whose DNS answers one of them would otherwise let the sandbox reach any port on the runner.
 */
export function hostAddresses(): string[] {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal) out.add(a.address.replace(/%.*$/, ''));
  }
  return [...out];
}

/** Undo steps, run last-in first-out; a failing step is reported and the rest still run. */
class Undo {
  private readonly steps: Array<() => Promise<void>> = [];
  constructor(private readonly log: Logger) {}
  push(step: () => Promise<void>): void {
    this.steps.push(step);
  }
  async run(): Promise<void> {
    for (let step = this.steps.pop(); step; step = this.steps.pop()) {
      try {
        await step();
      } catch (err) {
        this.log.warn(`cleanup: ${(err as Error).message}`);
      }
    }
  }
}

async function removeNetworks(engine: Engine, networks: SandboxNetworks): Promise<void> {
  for (const name of [networks.internal, networks.egress]) await callEngine(engine, ['network', 'rm', '-f', name]);
}

async function createNetworks(engine: Engine, identity: RunIdentity): Promise<SandboxNetworks> {
  const labels = resourceLabelArgs(identity);
  const networks = { internal: resourceName('sandbox-net', identity), egress: resourceName('egress-net', identity) };
  const created = await Promise.allSettled([
    mustCallEngine(
      engine,
      sandboxNetworkCreateArgs(engine.kind, networks.internal, labels),
      'creating the sandbox network',
    ),
    mustCallEngine(engine, egressNetworkCreateArgs(networks.egress, labels), 'creating the proxy egress network'),
  ]);
  const failed = created.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await removeNetworks(engine, networks);
    throw failed.reason;
  }
  return networks;
}

/** The Linux bridge behind a Podman network (netavark names it at creation, before any container attaches). */
async function bridgeInterface(engine: Engine, network: string): Promise<string | null> {
  const r = await callEngine(engine, ['network', 'inspect', '--format', '{{.NetworkInterface}}', network]);
  const name = r.stdout.trim();
  return r.code === 0 && /^[\w.-]{1,15}$/.test(name) ? name : null;
}

interface NetworkEndpoint {
  IPAddress?: string;
  Gateway?: string;
}

async function containerNetworks(engine: Engine, name: string): Promise<Record<string, NetworkEndpoint> | null> {
  const r = await callEngine(engine, ['container', 'inspect', '--format', '{{json .NetworkSettings.Networks}}', name]);
  if (r.code !== 0) return null;
  try {
    return JSON.parse(r.stdout) as Record<string, NetworkEndpoint>;
  } catch {
    return null;
  }
}

/** The proxy's address on the sandbox network (which DNS hands out for every name) and the egress gateway. */
async function proxyEndpoints(
  engine: Engine,
  name: string,
  networks: SandboxNetworks,
  exited: Promise<string>,
): Promise<{ sandboxAddress: string; hostGateway: string | null }> {
  // A proxy that already exited will never get an address: waiting out the polls would only delay its error (by
  // minutes on a slow engine).
  let proxyGone = false;
  void exited.then(() => (proxyGone = true));
  let endpoints: Record<string, NetworkEndpoint> | null = null;
  for (let i = 0; i < 200 && !proxyGone && !endpoints?.[networks.internal]?.IPAddress; i++) {
    endpoints = await containerNetworks(engine, name);
    if (!endpoints?.[networks.internal]?.IPAddress) await new Promise((r) => setTimeout(r, 50));
  }
  const sandboxAddress = endpoints?.[networks.internal]?.IPAddress;
  if (!sandboxAddress) {
    const state = await Promise.race([exited, Promise.resolve('still running')]);
    throw new SandboxError(`the proxy container has no address on the sandbox network (${state})`);
  }
  return {
    sandboxAddress,
    hostGateway: await resolveHostGateway(engine, name, endpoints?.[networks.egress]?.Gateway || null),
  };
}

/** Starts the proxy container; resolves once it prints its ready line. */
export async function openProxyNetwork(req: NetworkSessionRequest): Promise<NetworkSession> {
  const { engine, identity, policy, log } = req;
  const undo = new Undo(log);
  try {
    const sink = await openNetworkLogSink(req.networkLog, {
      runId: identity.runId,
      stderr: req.stderr,
      warn: (m) => log.warn(m),
      ...(req.onRecord ? { onRecord: req.onRecord } : {}),
    });
    undo.push(() => sink.close());

    // Independent start-up steps run side by side: start-up time is a feature.
    const networks = createNetworks(engine, identity);
    // Awaited below; until then a failure must not count as unhandled (it would crash airlock with exit 1).
    networks.catch(() => undefined);
    const [image, ca] = await Promise.all([
      ensureProxyImage(engine, (tag) => log.info(`building the proxy image ${tag}`)),
      generateRunCa(),
    ]).catch(async (err: unknown) => {
      await networks.then(
        (n) => removeNetworks(engine, n),
        () => undefined,
      );
      throw err;
    });
    const runDir = await mkdtemp(path.join(tmpdir(), `airlock-${identity.runId}-`));
    undo.push(() => rm(runDir, { recursive: true, force: true }));
    const trust = await writeSandboxTrust(runDir, ca);

    const nets = await networks;
    undo.push(() => removeNetworks(engine, nets));
    // Pushed after the networks, so it is undone before them.
    const unforward = await allowWithinBridge(engine, nets.internal, (network) => bridgeInterface(engine, network));
    if (unforward) undo.push(unforward);

    const name = resourceName('proxy', identity);
    undo.push(async () => void (await callEngine(engine, ['rm', '-f', name])));
    const launch = proxyLaunch(engine.kind, {
      name,
      image,
      networks: nets,
      labels: resourceLabelArgs(identity),
      limits: readHostLimits(),
    });
    const proxy = superviseProxy(await launchProxyContainer(engine, launch), (line) => sink.write(line));
    // Closing stdin stops the proxy; the container is removed by --rm (and by the step above if it was not).
    undo.push(() => proxy.stop());

    const { sandboxAddress, hostGateway } = await proxyEndpoints(engine, name, nets, proxy.exited);
    await proxy.start(
      proxyConfig({
        policy,
        credentials: req.credentials.proxyCredentials,
        ca,
        runId: identity.runId,
        sandboxAddress,
        hostGateway,
        hostAddresses: hostAddresses(),
        audit: req.audit === true,
        ...(policy.upstreamCaFile ? { upstreamCaPem: await readFile(policy.upstreamCaFile, 'utf8') } : {}),
      }),
    );
    log.info(`proxy ${name} ready at ${sandboxAddress} on ${nets.internal}`);

    let closing = false;
    return {
      runArgs: sandboxNetworkRunArgs(nets, sandboxAddress),
      env: trust.env,
      mounts: trust.mounts,
      failure: proxy.exited.then((why) => (closing ? new Promise<string>(() => undefined) : why)),
      counts: () => sink.counts(),
      close: async () => {
        closing = true;
        await undo.run();
      },
    };
  } catch (err) {
    await undo.run();
    throw err;
  }
}
