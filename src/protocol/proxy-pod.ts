/**
 * The contract between the host and the proxy when both run as Kubernetes pods (docs/kubernetes.md). There is no
 * stdin to carry the configuration there, so the proxy pod reads it from a Secret mounted as a file, learns its
 * own address from the downward API, and keeps the usual ready and event lines on stdout (the host reads them as
 * pod logs). Two additions exist only here:
 *
 * - a **canary** listener on the proxy pod: a port the sandbox's NetworkPolicy does not allow. The sandbox pod's
 *   first (init) container, airlock's own program, must fail to reach it before the command may start; every
 *   connection the canary accepts is reported on stdout, so a policy that stops being enforced mid-run is noticed.
 * - the **NetworkPolicy probe**: the arguments and exit codes of that init container.
 *
 * Pure: names and encodings only.
 */

/** Environment variables of the proxy container in pod mode. */
export const PROXY_POD_ENV = {
  /** Path of the mounted configuration (a ProxyConfig as JSON, without `sandboxAddress`). */
  configFile: 'AIRLOCK_PROXY_CONFIG_FILE',
  /** The pod's own IP (downward API `status.podIP`): the answer to every DNS query. */
  podIp: 'AIRLOCK_PROXY_POD_IP',
  /** The canary port. */
  canaryPort: 'AIRLOCK_PROXY_CANARY_PORT',
} as const;

/** First argument of the proxy program selecting what it runs (no argument: stdin mode, as under Podman/Docker). */
export const PROXY_MODE = { pod: 'pod', networkPolicyProbe: 'netpolicy-probe' } as const;

/** Where the proxy pod finds its configuration Secret, and the key holding the JSON. */
export const PROXY_CONFIG_DIR = '/etc/airlock-proxy';
export const PROXY_CONFIG_KEY = 'config.json';

/** The ports the proxy serves the sandbox on (DNS can only be port 53: resolv.conf names no port). */
export const PROXY_POD_PORTS = { dns: 53, http: 80, https: 443 } as const;
/** Not allowed by the sandbox's egress policy, allowed by the proxy's ingress policy: only the former can block it. */
export const CANARY_PORT = 9443;

/** `AIRLOCK-CANARY {"from":"10.0.0.7"}`: something connected to the canary. */
export const CANARY_LINE_PREFIX = 'AIRLOCK-CANARY ';

export function encodeCanaryLine(from: string): string {
  return `${CANARY_LINE_PREFIX}${JSON.stringify({ from })}\n`;
}

/** The peer address of a canary line, or null for any other line (or a malformed one). */
export function decodeCanaryLine(line: string): { from: string } | null {
  if (!line.startsWith(CANARY_LINE_PREFIX)) return null;
  try {
    const parsed = JSON.parse(line.slice(CANARY_LINE_PREFIX.length)) as unknown;
    if (parsed && typeof parsed === 'object' && typeof (parsed as { from?: unknown }).from === 'string') {
      return { from: (parsed as { from: string }).from };
    }
  } catch {
    // not ours
  }
  return null;
}

/** Exit codes of the probe: only `enforced` lets the sandbox's command start. */
export const PROBE_EXIT = {
  enforced: 0,
  /** A forbidden target answered: the cluster does not enforce the sandbox's NetworkPolicy. */
  notEnforced: 10,
  /** The proxy itself was unreachable, so a blocked forbidden target would prove nothing. */
  noControl: 11,
  usage: 12,
} as const;

export interface ProbeTarget {
  host: string;
  port: number;
}

export interface NetworkPolicyProbeArgs {
  /** Must be reachable (the positive control): the proxy's HTTPS port. */
  allowed: ProbeTarget;
  /** Must all be unreachable: the canary, and the API server when known. */
  forbidden: ProbeTarget[];
  /** How long policy programming may lag behind the pod's network before the probe gives up. */
  deadlineMs: number;
}

function target(text: string): ProbeTarget | null {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return null;
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

function formatTarget(t: ProbeTarget): string {
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

/** The probe's argv after the mode: `--allowed IP:PORT --forbidden IP:PORT… --deadline-ms N`. */
export function encodeProbeArgs(args: NetworkPolicyProbeArgs): string[] {
  return [
    '--allowed',
    formatTarget(args.allowed),
    ...args.forbidden.flatMap((t) => ['--forbidden', formatTarget(t)]),
    '--deadline-ms',
    String(args.deadlineMs),
  ];
}

export function decodeProbeArgs(argv: readonly string[]): NetworkPolicyProbeArgs | string {
  let allowed: ProbeTarget | null = null;
  const forbidden: ProbeTarget[] = [];
  let deadlineMs = 20_000;
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (value === undefined) return `${flag} needs a value`;
    if (flag === '--allowed' || flag === '--forbidden') {
      const t = target(value);
      if (!t) return `${flag}: expected IP:PORT, not '${value}'`;
      if (flag === '--allowed') allowed = t;
      else forbidden.push(t);
    } else if (flag === '--deadline-ms' && /^\d{1,7}$/.test(value)) {
      deadlineMs = Number(value);
    } else {
      return `unknown argument '${flag}'`;
    }
  }
  if (!allowed) return '--allowed is required';
  if (forbidden.length === 0) return 'at least one --forbidden target is required';
  return { allowed, forbidden, deadlineMs };
}
