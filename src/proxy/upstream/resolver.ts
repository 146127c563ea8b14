import { promises as dns } from 'node:dns';
import type { UpstreamResolver } from './route.js';

/**
 * The production resolver: the configured `upstream_dns` servers, or the system resolver when none are given.
 * IPv4 answers are preferred; IPv6 is asked only when a name has no A records.
 */
export function systemResolver(servers: readonly string[] = []): UpstreamResolver {
  if (servers.length === 0) {
    return async (name) => (await dns.lookup(name, { all: true, verbatim: false })).map((a) => a.address);
  }
  const resolver = new dns.Resolver({ timeout: 5000, tries: 2 });
  resolver.setServers([...servers]);
  return async (name) => {
    try {
      const v4 = await resolver.resolve4(name);
      if (v4.length > 0) return v4;
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENODATA') throw err;
    }
    return resolver.resolve6(name);
  };
}
