// The proxy container's entry point (bundled to dist/proxy/airlock-proxy.mjs). All behaviour is in
// runProxyProcess; this file only connects it to the process and turns its result into the exit code.
import { runProxyProcess } from './start.js';

const stop = new AbortController();
// SIGTERM (podman stop) ends the run like EOF on stdin: close listeners, flush logs, exit 0.
process.once('SIGTERM', () => stop.abort());
const io = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, signal: stop.signal };
process.exitCode = await runProxyProcess(io);
process.exit();
