import { isIPv4, isIPv6, type Decision } from './policy.js';

/**
 * The SSRF / DNS-rebinding guard: addresses the proxy must not connect to on a name's say-so. A sandbox that can
 * make an allowed name resolve to 127.0.0.1, 10.x or 169.254.169.254 would otherwise reach the proxy's own host,
 * the CI runner's network or the cloud metadata service. Only an explicit `upstream_hosts` mapping lifts it.
 * Pure, so the proxy (which enforces it) and `airlock policy check` (which predicts it) share one classification.
 */

type V4Range = [base: number, prefixBits: number, what: string];

const V4_FORBIDDEN: V4Range[] = [
  [ipv4ToInt('0.0.0.0'), 8, 'unspecified ("this network")'],
  [ipv4ToInt('10.0.0.0'), 8, 'private'],
  [ipv4ToInt('100.64.0.0'), 10, 'carrier-grade NAT'],
  [ipv4ToInt('127.0.0.0'), 8, 'loopback'],
  [ipv4ToInt('169.254.0.0'), 16, 'link-local (cloud metadata)'],
  [ipv4ToInt('172.16.0.0'), 12, 'private'],
  [ipv4ToInt('192.0.0.0'), 24, 'IETF protocol assignments'],
  // Documentation ranges (RFC 5737) are never a real upstream, but a machine may hold one (labs, test rigs).
  [ipv4ToInt('192.0.2.0'), 24, 'documentation (TEST-NET-1)'],
  [ipv4ToInt('198.51.100.0'), 24, 'documentation (TEST-NET-2)'],
  [ipv4ToInt('203.0.113.0'), 24, 'documentation (TEST-NET-3)'],
  [ipv4ToInt('192.168.0.0'), 16, 'private'],
  [ipv4ToInt('198.18.0.0'), 15, 'benchmarking'],
  [ipv4ToInt('224.0.0.0'), 4, 'multicast'],
  [ipv4ToInt('240.0.0.0'), 4, 'reserved or broadcast'],
];

function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
}

function v4Problem(ip: string): string | null {
  const n = ipv4ToInt(ip);
  for (const [base, bits, what] of V4_FORBIDDEN) {
    const size = 2 ** (32 - bits);
    if (n >= base && n < base + size) return what;
  }
  return null;
}

/** Eight 16-bit groups of an IPv6 address (validated by the caller). */
function ipv6Groups(ip: string): number[] {
  let s = ip.toLowerCase();
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  let tailV4: number[] = [];
  const lastColon = s.lastIndexOf(':');
  const last = s.slice(lastColon + 1);
  if (last.includes('.')) {
    const n = ipv4ToInt(last);
    tailV4 = [Math.floor(n / 65536), n % 65536];
    s = s.slice(0, lastColon + 1) + '0:0';
  }
  const [head = '', tail] = s.split('::');
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const h = parse(head);
  const t = tail === undefined ? [] : parse(tail);
  const groups = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  if (tailV4.length) groups.splice(6, 2, ...tailV4);
  return groups;
}

function v6Problem(ip: string): string | null {
  const g = ipv6Groups(ip);
  const first = g[0]!;
  if (g.every((x) => x === 0)) return 'unspecified';
  if (g.slice(0, 7).every((x) => x === 0) && g[7] === 1) return 'loopback';
  const embeddedV4 = () => `${g[6]! >> 8}.${g[6]! & 255}.${g[7]! >> 8}.${g[7]! & 255}`;
  // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) reach the IPv4 address.
  if (g.slice(0, 5).every((x) => x === 0) && (g[5] === 0xffff || g[5] === 0)) return v4Problem(embeddedV4());
  if (first === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every((x) => x === 0)) return v4Problem(embeddedV4());
  if ((first & 0xffc0) === 0xfe80) return 'link-local';
  if ((first & 0xffc0) === 0xfec0) return 'site-local';
  if ((first & 0xfe00) === 0xfc00) return 'unique-local (private, includes the fd00:ec2::254 metadata service)';
  if ((first & 0xff00) === 0xff00) return 'multicast';
  return null;
}

/** Why the proxy must not connect to this IP address, or null when it is a public address. */
export function forbiddenAddressReason(ip: string): string | null {
  if (isIPv4(ip)) return v4Problem(ip);
  if (isIPv6(ip.replace(/%.*$/, ''))) return v6Problem(ip);
  return 'not an IP address';
}

/** What a refused user can do, in the proxy's 403 (`fix`) and in `airlock policy check`. */
export const ADDRESS_GUARD_FIX =
  'the name resolves to an internal address; map it explicitly in sandbox.yaml `upstream_hosts` if that is intended';

/**
 * The proxy's verdict for a request the allowlist lets through, when its host is an IP literal: an address in
 * internal space is refused by the guard before any connection (a name's addresses are known only at run time, from
 * the proxy's DNS, so only literals can be judged ahead). Anything else is returned unchanged.
 */
export function guardLiteralTarget(decision: Decision): Decision {
  if (!decision.allowed || !(isIPv4(decision.host) || isIPv6(decision.host))) return decision;
  const problem = forbiddenAddressReason(decision.host);
  if (problem === null) return decision;
  return {
    allowed: false,
    code: 'upstream_address_not_allowed',
    host: decision.host,
    path: decision.path,
    reason: `${decision.host} is a ${problem} address: the proxy's address guard refuses it even though the allowlist permits the request`,
    fix: ADDRESS_GUARD_FIX,
  };
}
