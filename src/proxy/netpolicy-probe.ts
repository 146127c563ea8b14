/**
 * The sandbox pod's first container (an init container running airlock's proxy image, before any untrusted code
 * exists in the pod): proves that the pod's NetworkPolicy is enforced, or refuses. It must reach the proxy (the
 * positive control: without it, a blocked connection proves nothing) and must fail to reach every forbidden
 * target — the proxy pod's canary port, which only the sandbox's egress policy blocks, and the API server. The
 * verdict is the container's exit code, which the kubelet reports and the sandbox can neither see nor change.
 */
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { PROBE_EXIT, type NetworkPolicyProbeArgs, type ProbeTarget } from '../protocol/proxy-pod.js';

export interface ProbeIo {
  stderr: { write(chunk: string): unknown };
  /** Where the kubelet picks up the container's termination message. */
  terminationLog?: string;
  /** Per-connection timeout; a policy that drops packets shows as a timeout. */
  connectTimeoutMs?: number;
}

const RETRY_MS = 500;

function reachable(target: ProbeTarget, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: target.host, port: target.port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

const show = (t: ProbeTarget) => (t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`);

export async function runNetworkPolicyProbe(args: NetworkPolicyProbeArgs, io: ProbeIo): Promise<number> {
  const timeoutMs = io.connectTimeoutMs ?? 2000;
  const deadline = Date.now() + args.deadlineMs;
  const finish = async (code: number, message: string): Promise<number> => {
    io.stderr.write(`airlock-netpolicy-probe: ${message}\n`);
    if (io.terminationLog) await writeFile(io.terminationLog, message).catch(() => undefined);
    return code;
  };

  let control = false;
  while (!control && Date.now() < deadline) {
    control = await reachable(args.allowed, timeoutMs);
    if (!control) await new Promise((r) => setTimeout(r, RETRY_MS));
  }
  if (!control) {
    return finish(PROBE_EXIT.noControl, `the proxy at ${show(args.allowed)} is unreachable: nothing can be proven`);
  }
  // A CNI may program a new pod's policy a moment after its network comes up: until the deadline, one round in
  // which every forbidden target is unreachable is the proof; a target still answering at the deadline is the
  // finding.
  for (;;) {
    const answered = await Promise.all(args.forbidden.map((t) => reachable(t, timeoutMs)));
    const reached = args.forbidden.filter((_, i) => answered[i]);
    if (reached.length === 0) {
      return finish(PROBE_EXIT.enforced, `enforced: ${args.forbidden.map(show).join(', ')} unreachable`);
    }
    if (Date.now() >= deadline) {
      return finish(
        PROBE_EXIT.notEnforced,
        `the NetworkPolicy is not enforced: this pod reached ${reached.map(show).join(', ')}, which its policy forbids`,
      );
    }
    await new Promise((r) => setTimeout(r, RETRY_MS));
  }
}
