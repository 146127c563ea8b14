// The proxy container's entry point (bundled to dist/proxy/airlock-proxy.mjs). All behaviour is in the functions
// it calls; this file only connects them to the process and turns their result into the exit code. No argument:
// configuration on stdin (Podman, Docker); `pod`: a Kubernetes proxy pod; `netpolicy-probe`: the sandbox pod's
// NetworkPolicy check (docs/kubernetes.md).
import { decodeProbeArgs, PROBE_EXIT, PROXY_MODE } from '../protocol/proxy-pod.js';
import { runNetworkPolicyProbe } from './netpolicy-probe.js';
import { runProxyPod } from './pod.js';
import { runProxyProcess } from './start.js';

const stop = new AbortController();
// SIGTERM (podman stop, pod deletion) ends the run like EOF on stdin: close listeners, flush logs, exit 0.
process.once('SIGTERM', () => stop.abort());
const io = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, signal: stop.signal };
const [mode, ...rest] = process.argv.slice(2);
if (mode === PROXY_MODE.pod) {
  process.exitCode = await runProxyPod({ ...io, env: process.env });
} else if (mode === PROXY_MODE.networkPolicyProbe) {
  const args = decodeProbeArgs(rest);
  process.exitCode =
    typeof args === 'string'
      ? (process.stderr.write(`airlock-netpolicy-probe: ${args}\n`), PROBE_EXIT.usage)
      : await runNetworkPolicyProbe(args, { stderr: process.stderr, terminationLog: '/dev/termination-log' });
} else {
  process.exitCode = await runProxyProcess(io);
}
process.exit();
