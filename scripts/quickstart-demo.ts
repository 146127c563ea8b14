// The quick start's demonstration: a repository whose policy allows one local HTTPS service, and a command in
// the sandbox that reaches it with a token it only ever sees as a surrogate, and is refused everything else.
// Nothing leaves this machine: the "API" is an HTTPS server on this host, reached through host-gateway.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTestPki } from '../test/helpers/tls-fixtures.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'dist/cli/bin.js');

const pki = await makeTestPki(['api.demo.test']);
const realToken = 'ghp_' + 'R'.repeat(36);
const server = https.createServer({ cert: pki.certPem, key: pki.keyPem }, (req, res) => {
  const real = req.headers.authorization === `Bearer ${realToken}`;
  res.end(`hello from api.demo.test: the token that arrived here is ${real ? 'the REAL one' : 'NOT the real one'}\n`);
});
await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
const { port } = server.address() as AddressInfo;

const repo = mkdtempSync(path.join(tmpdir(), 'airlock-quickstart-'));
mkdirSync(path.join(repo, '.airlock'));
writeFileSync(path.join(repo, '.airlock/demo-ca.pem'), pki.caPem);
writeFileSync(
  path.join(repo, '.airlock/sandbox.yaml'),
  `upstream_hosts:\n  api.demo.test: host-gateway:${port}\nupstream_ca_file: demo-ca.pem\n` +
    `masked_secrets:\n  GH_TOKEN:\n    value: !env DEMO_TOKEN\n    scopes: [api.demo.test]\n    headers: [Authorization]\n`,
);
writeFileSync(
  path.join(repo, '.airlock/network-allowlist.yaml'),
  'url_prefixes:\n  - {host: api.demo.test, path: /hello, methods: [GET]}\n',
);

const script = [
  'echo "--- inside the sandbox, GH_TOKEN is a surrogate: ${GH_TOKEN:0:10}..."',
  'echo "--- allowed:"; curl -sS -H "Authorization: Bearer $GH_TOKEN" https://api.demo.test/hello',
  'echo "--- blocked (host not in the allowlist):"; curl -sS https://example.com/; echo',
  'echo "--- blocked (path not in the allowlist):"; curl -sS https://api.demo.test/admin; echo',
].join('\n');
process.stderr.write(`quickstart: airlock run -- bash -c '…' (policy in ${repo}/.airlock)\n`);
const child = spawn(process.execPath, [bin, 'run', '--network-log-live', '--', 'bash', '-c', script], {
  cwd: repo,
  stdio: 'inherit',
  env: { ...process.env, DEMO_TOKEN: realToken },
});
const code = await new Promise<number | null>((r) => child.on('close', r));
server.close();
process.exitCode = code ?? 1;
