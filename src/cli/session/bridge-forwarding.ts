/**
 * Rootful Podman under a host firewall that drops forwarded traffic (Docker's daemon sets the iptables FORWARD
 * policy to DROP and loads br_netfilter, so frames between two ports of one Linux bridge traverse FORWARD). Podman
 * gives an `--internal` network no FORWARD rule at all (netavark writes them only for routed networks), so on such
 * a host — every GitHub runner has Docker running — the sandbox cannot reach the proxy on its own bridge, and a run
 * fails with "Could not resolve host". The fix is one rule per run that accepts traffic entering *and* leaving the
 * sandbox bridge: it lets the sandbox reach its only peer and nothing else (the bridge has no host address and no
 * route out; traffic to any other interface is still judged by the host's rules). The rule carries the network's
 * name in a comment, is removed with the network, and a killed run's rule is swept by the next run.
 * Rootless Podman and Docker need none of this (a private network namespace; Docker writes its own rules).
 */
import { readFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { findOnPath, type Engine } from '../engine/engine.js';
import { SandboxError } from '../errors.js';

const COMMENT_PREFIX = 'airlock:';
const BRIDGE_NETFILTER = '/proc/sys/net/bridge/bridge-nf-call-iptables';

/** Whether `iptables -S FORWARD` describes a chain that drops what no rule accepts (policy or a catch-all rule). */
export function forwardChainDrops(listing: string): boolean {
  for (const line of listing.split('\n')) {
    const words = line.trim().split(/\s+/);
    if (words[0] === '-P' && words[1] === 'FORWARD' && words[2] !== 'ACCEPT') return true;
    // A catch-all `-A FORWARD -j DROP|REJECT` (firewalld-era hosts) drops just the same.
    if (words[0] === '-A' && words.length === 4 && words[2] === '-j' && /^(DROP|REJECT)$/.test(words[3] ?? '')) {
      return true;
    }
  }
  return false;
}

/** The rule, without the `-I`/`-D` in front, for one network's bridge. */
export function bridgeRule(bridge: string, network: string): string[] {
  return [
    'FORWARD',
    '-i',
    bridge,
    '-o',
    bridge,
    '-m',
    'comment',
    '--comment',
    `${COMMENT_PREFIX}${network}`,
    '-j',
    'ACCEPT',
  ];
}

/** Rules airlock added (network name + the rule as `iptables -S` prints it, minus `-A`), from `iptables -S FORWARD`. */
export function airlockRules(listing: string): Array<{ network: string; rule: string[] }> {
  const found: Array<{ network: string; rule: string[] }> = [];
  for (const line of listing.split('\n')) {
    const words = line.trim().split(/\s+/);
    if (words[0] !== '-A') continue;
    const at = words.indexOf('--comment');
    const comment = at >= 0 ? words[at + 1]?.replace(/^"|"$/g, '') : undefined;
    if (!comment?.startsWith(COMMENT_PREFIX)) continue;
    const network = comment.slice(COMMENT_PREFIX.length);
    // Only rules of exactly our shape: a foreign rule that happens to borrow the prefix is left alone.
    const i = words.indexOf('-i');
    const o = words.indexOf('-o');
    const bridge = i >= 0 ? words[i + 1] : undefined;
    if (bridge === undefined || o < 0 || words[o + 1] !== bridge || network === '') continue;
    found.push({ network, rule: bridgeRule(bridge, network) });
  }
  return found;
}

interface Tool {
  run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

async function iptables(): Promise<Tool | null> {
  const binary =
    (await findOnPath('iptables', process.env.PATH)) ??
    (await findOnPath('iptables', '/usr/sbin:/sbin:/usr/local/sbin'));
  if (!binary) return null;
  return {
    run: (args) =>
      new Promise((resolve) => {
        // `-w`: wait for the xtables lock instead of failing when the engine is editing rules at the same moment.
        const child = spawn(binary, ['-w', '5', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
        child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
        child.on('error', (e) => resolve({ code: 127, stdout, stderr: e.message }));
        child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
      }),
  };
}

function appliesTo(engine: Engine): boolean {
  return engine.kind === 'podman' && process.getuid?.() === 0;
}

async function bridgeFiltered(): Promise<boolean> {
  try {
    return (await readFile(BRIDGE_NETFILTER, 'utf8')).trim() === '1';
  } catch {
    return false; // br_netfilter not loaded: bridged frames never reach iptables
  }
}

/**
 * Makes sure the sandbox can reach the proxy on `network`'s bridge. Returns the undo step when a rule was added,
 * null when none was needed. Throws (the run must not start unexplained-broken) when one is needed and cannot be
 * added.
 */
export async function allowWithinBridge(
  engine: Engine,
  network: string,
  bridgeOf: (network: string) => Promise<string | null>,
): Promise<(() => Promise<void>) | null> {
  if (!appliesTo(engine) || !(await bridgeFiltered())) return null;
  const tool = await iptables();
  if (!tool) return null; // no iptables: nothing of Docker's kind can be dropping the bridge either
  const listing = await tool.run(['-S', 'FORWARD']);
  if (listing.code !== 0 || !forwardChainDrops(listing.stdout)) return null;
  const bridge = await bridgeOf(network);
  if (!bridge) throw new SandboxError(`cannot find the bridge interface of the sandbox network ${network}`);
  const rule = bridgeRule(bridge, network);
  const added = await tool.run(['-I', ...rule.slice(0, 1), '1', ...rule.slice(1)]);
  if (added.code !== 0) {
    throw new SandboxError(
      `the host firewall drops traffic inside Podman's internal bridges (iptables FORWARD drops, as Docker sets it) ` +
        `and airlock could not add the rule that lets the sandbox reach its proxy: ${added.stderr.trim()}`,
    );
  }
  return async () => {
    await tool.run(['-D', ...rule]);
  };
}

/** Removes rules left by runs whose network is gone (a SIGKILLed run cannot remove its own). */
export async function removeStaleBridgeRules(
  engine: Engine,
  networkExists: (network: string) => Promise<boolean>,
): Promise<string[]> {
  if (!appliesTo(engine)) return [];
  const tool = await iptables();
  if (!tool) return [];
  const listing = await tool.run(['-S', 'FORWARD']);
  if (listing.code !== 0) return [];
  const removed: string[] = [];
  for (const { network, rule } of airlockRules(listing.stdout)) {
    if (await networkExists(network)) continue;
    if ((await tool.run(['-D', ...rule])).code === 0) removed.push(network);
  }
  return removed;
}
