import { explicitPort, isIPv4, isIPv6, normalizeHost } from '../../protocol/policy.js';
import { parseHostsEntry } from '../../protocol/sandbox-config.js';
import { forbiddenAddressReason } from './address-guard.js';

/** Resolves a host name to its addresses. Injected so tests can play a hostile DNS. */
export type UpstreamResolver = (name: string) => Promise<string[]>;

export type UpstreamRoute =
  | { kind: 'connect'; address: string; port: number; mapped: boolean }
  /** The name resolves into address space the guard forbids: a 403, the request is never sent. */
  | { kind: 'forbidden'; reason: string }
  /** The name does not resolve: an upstream failure, a 502. */
  | { kind: 'failed'; reason: string };

export interface UpstreamRouterOptions {
  /**
   * name → "IP" or "IP:PORT" / "[v6]:PORT"; bypasses DNS and the address guard. A name may carry a port
   * (`name:5000`): that mapping is for requests the sandbox made to that port, and comes before the bare name's.
   */
  hosts?: Readonly<Record<string, string>>;
  resolve: UpstreamResolver;
  /** How long a vetted answer is reused; 0 disables the cache. */
  cacheTtlMs?: number;
  /**
   * Addresses of the machine running airlock (its public ones too): an allowed name whose DNS answers one of them
   * would let the sandbox reach any port on its own host. Refused like private space, unless mapped in `hosts`.
   */
  hostAddresses?: readonly string[];
  now?: () => number;
}

const CACHE_LIMIT = 1024;

/** A mapping's key as looked up: the normalised name, with `:port` when the key names one. */
function mappingKey(host: string, port: number | null): string {
  return port === null ? host : `${host}:${port}`;
}

/**
 * Decides where a request for `host` made to `port` (the listener's: the port the sandbox connected to, never one
 * the request names) goes. The upstream port is the mapping's when it has one, else that same port. The address
 * returned is the one vetted here and the one the caller connects to — there is no second lookup, so a rebinding
 * DNS cannot swap in another address afterwards.
 */
export function createUpstreamRouter(
  options: UpstreamRouterOptions,
): (host: string, port: number) => Promise<UpstreamRoute> {
  const hosts = new Map<string, { address: string; port?: number }>();
  for (const [name, value] of Object.entries(options.hosts ?? {})) {
    const entry = parseHostsEntry(value);
    if (!entry) throw new Error(`upstream hosts: ${name}: expected IP or IP:PORT`);
    const host = normalizeHost(name);
    if (host === null) throw new Error(`upstream hosts: ${name}: expected a host name, optionally with a port`);
    hosts.set(mappingKey(host, explicitPort(name)), entry);
  }
  const ownHost = new Set((options.hostAddresses ?? []).map(canonicalAddress));
  const ttl = options.cacheTtlMs ?? 10_000;
  const now = options.now ?? Date.now;
  const cache = new Map<string, { addresses: string[]; until: number }>();

  async function lookup(host: string): Promise<string[]> {
    const hit = cache.get(host);
    if (hit && hit.until > now()) return hit.addresses;
    const addresses = await options.resolve(host);
    if (ttl > 0) {
      if (cache.size >= CACHE_LIMIT) cache.clear();
      cache.set(host, { addresses, until: now() + ttl });
    }
    return addresses;
  }

  return async (host, port) => {
    const mapped = hosts.get(mappingKey(host, port)) ?? hosts.get(host);
    if (mapped) return { kind: 'connect', address: mapped.address, port: mapped.port ?? port, mapped: true };
    const literal = isIPv4(host) || isIPv6(host);
    let addresses: string[];
    try {
      addresses = literal ? [host] : await lookup(host);
    } catch (err) {
      return { kind: 'failed', reason: `cannot resolve ${host}: ${(err as { code?: string }).code ?? String(err)}` };
    }
    if (addresses.length === 0) return { kind: 'failed', reason: `${host} has no addresses` };
    // One internal answer taints the name: a public name has no business resolving into the private space.
    for (const address of addresses) {
      const problem = ownHost.has(canonicalAddress(address))
        ? 'an address of the machine running airlock'
        : forbiddenAddressReason(address);
      if (problem !== null) return { kind: 'forbidden', reason: `${host} resolves to ${address} (${problem})` };
    }
    return { kind: 'connect', address: addresses[0]!, port, mapped: false };
  };
}

/** One spelling per address: lower-case, IPv4-mapped IPv6 reduced to its IPv4 form. */
function canonicalAddress(address: string): string {
  const lower = address.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  return mapped ? mapped[1]! : lower;
}
