/**
 * What `host-gateway` means for the proxy container: the address at which it reaches the machine running airlock.
 *
 * Rootful engines and Docker: the gateway of the proxy's egress network, which is an address of the host itself
 * (the bridge's). Rootless Podman is different: its bridges live in a network namespace of their own, so that
 * gateway is an address *inside* that namespace and nothing of the host listens there. With pasta (Podman 5) the
 * host is reached at a mapped address instead (169.254.1.2 by default, `host_containers_internal_ip` in
 * containers.conf); Podman writes whatever it chose into the container's /etc/hosts as `host.containers.internal`,
 * so airlock takes it from there rather than guessing per version and network mode.
 */
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { callEngine, type Engine } from '../engine/engine.js';

export const HOST_ALIAS = 'host.containers.internal';

/** The address an /etc/hosts text gives `name` (the first line naming it), or null. */
export function hostsFileAddress(hosts: string, name: string): string | null {
  for (const line of hosts.split('\n')) {
    const [address, ...names] = line.replace(/#.*/, '').trim().split(/\s+/);
    if (address && isIP(address) && names.includes(name)) return address;
  }
  return null;
}

/** Whether the engine's networks live in a namespace apart from the host's (rootless Podman). */
export function bridgesApartFromHost(engine: Engine, uid: number | undefined = process.getuid?.()): boolean {
  return engine.kind === 'podman' && uid !== undefined && uid !== 0;
}

/**
 * `host-gateway` for the proxy container `proxyName`: Podman's own `host.containers.internal` when its bridges
 * are apart from the host (rootless), else — or when Podman wrote none — the egress network's gateway.
 */
export async function resolveHostGateway(
  engine: Engine,
  proxyName: string,
  egressGateway: string | null,
): Promise<string | null> {
  if (!bridgesApartFromHost(engine)) return egressGateway;
  const inspected = await callEngine(engine, ['container', 'inspect', '--format', '{{.HostsPath}}', proxyName]);
  const hostsPath = inspected.code === 0 ? inspected.stdout.trim() : '';
  if (!hostsPath) return egressGateway;
  const hosts = await readFile(hostsPath, 'utf8').catch(() => '');
  return hostsFileAddress(hosts, HOST_ALIAS) ?? egressGateway;
}
