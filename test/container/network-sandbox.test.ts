/**
 * The network sandbox end to end, on real Podman (and Docker when AIRLOCK_TEST_DOCKER=1): the sandboxed command's
 * only network peer is the proxy. Fake upstreams run on this machine and are reached through `upstream_hosts:
 * host-gateway:PORT`, so no traffic leaves it. Every probe inside the sandbox uses real clients (curl, git, node,
 * python3 from the embedded default image, which is the host's own /usr).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { makeTestPki } from '../helpers/tls-fixtures.js';
import { startGitHttpsServer } from '../helpers/upstream.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// The built CLI, as users run it (npm test builds first).
const entry = path.join(root, 'dist/cli/bin.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function airlock(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [entry, ...args], {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

const CANARY = 'CANARY-BLOCKED-CONTENT-7f3a91';

interface Upstream {
  port: number;
  received: Array<{ host: string; method: string; url: string }>;
  close(): Promise<void>;
}

/** One HTTPS server for every fake host: the proxy connects to it by IP and sends the real Host header. */
async function startUpstream(pki: { certPem: string; keyPem: string }): Promise<Upstream> {
  const received: Upstream['received'] = [];
  const server = https.createServer({ cert: pki.certPem, key: pki.keyPem }, (req, res) => {
    const host = String(req.headers.host ?? '');
    received.push({ host, method: req.method ?? '', url: req.url ?? '' });
    req.resume();
    if (host.startsWith('blocked.test')) return void res.end(CANARY);
    if (req.url === '/ok') return void res.end('hello from allowed.test\n');
    if (req.url === '/redirect') {
      res.writeHead(302, { Location: 'https://blocked.test/secret' });
      return void res.end();
    }
    if (req.url === '/echo-method') return void res.end(`method=${req.method}\n`);
    res.writeHead(404);
    res.end('not found\n');
  });
  await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
  return {
    port: (server.address() as AddressInfo).port,
    received,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

let workspace: string;
let upstream: Upstream;
let git: { port: number; close(): Promise<void> };
const engines = ['podman', ...(process.env.AIRLOCK_TEST_DOCKER === '1' ? ['docker'] : [])];

before(async () => {
  const pki = await makeTestPki(['allowed.test', 'blocked.test', 'git.test', 'pypi.test', 'npm.test', 'deb.test']);
  upstream = await startUpstream(pki);
  const repos = await mkdtemp(path.join(tmpdir(), 'airlock-git-'));
  execFileSync('git', ['init', '-q', '--bare', path.join(repos, 'app.git')]);
  const src = await mkdtemp(path.join(tmpdir(), 'airlock-src-'));
  execFileSync('sh', [
    '-c',
    `cd ${src} && git init -q && echo hi > README && git add . && git -c user.name=t -c user.email=t@t commit -qm init && git push -q ${repos}/app.git HEAD:refs/heads/main`,
  ]);
  execFileSync('git', ['--git-dir', path.join(repos, 'app.git'), 'symbolic-ref', 'HEAD', 'refs/heads/main']);
  git = await startGitHttpsServer(pki, repos, undefined, '0.0.0.0');
  workspace = await mkdtemp(path.join(tmpdir(), 'airlock-net-'));
  await mkdir(path.join(workspace, '.airlock'));
  await writeFile(path.join(workspace, '.airlock/upstream-ca.pem'), pki.caPem);
  await writeFile(
    path.join(workspace, '.airlock/sandbox.yaml'),
    [
      'upstream_ca_file: upstream-ca.pem',
      'upstream_hosts:',
      `  allowed.test: host-gateway:${upstream.port}`,
      `  blocked.test: host-gateway:${upstream.port}`,
      `  git.test: host-gateway:${git.port}`,
      ...['pypi.test', 'npm.test', 'deb.test'].map((h) => `  ${h}: host-gateway:${upstream.port}`),
      '',
    ].join('\n'),
  );
  await writeFile(
    path.join(workspace, '.airlock/network-allowlist.yaml'),
    [
      'domains: [pypi.test, npm.test, deb.test]',
      'url_prefixes:',
      '  - {host: allowed.test, path: /ok, methods: [GET]}',
      '  - {host: allowed.test, path: /redirect, methods: [GET]}',
      '  - {host: allowed.test, path: /echo-method, methods: [GET]}',
      '  - {host: git.test, path: /app.git/*, methods: [GET, POST]}',
      '',
    ].join('\n'),
  );
});

after(async () => {
  await upstream?.close();
  await git?.close();
});

/** Runs a bash script in the sandbox; each probe prints `name=value` lines. */
async function probe(
  engine: string,
  script: string,
  extra: string[] = [],
): Promise<Run & { results: Map<string, string> }> {
  const run = await airlock(['run', '--engine', engine, ...extra, '--', 'bash', '-c', script], workspace);
  const results = new Map<string, string>();
  for (const line of run.stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) results.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return { ...run, results };
}

for (const engine of engines) {
  describe(`network sandbox on ${engine}`, () => {
    it('allowed requests reach the upstream; every kind of block is a JSON 403 that never reaches it', async () => {
      const before = upstream.received.length;
      const r = await probe(
        engine,
        [
          'echo ok=$(curl -sS https://allowed.test/ok)',
          'echo path=$(curl -s https://allowed.test/nope)',
          'echo method=$(curl -s -X POST https://allowed.test/ok)',
          'echo host=$(curl -s https://blocked.test/secret)',
          'echo http=$(curl -s http://blocked.test/secret)',
          'echo redirect=$(curl -sL https://allowed.test/redirect)',
          'echo python=$(python3 -c "import urllib.request;print(urllib.request.urlopen(\'https://allowed.test/ok\').read().decode().strip())")',
          'echo node=$(node -e "fetch(\'https://allowed.test/ok\').then(r=>r.text()).then(t=>console.log(t.trim()))")',
        ].join('\n'),
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.results.get('ok'), 'hello from allowed.test');
      assert.equal(r.results.get('python'), 'hello from allowed.test');
      assert.equal(r.results.get('node'), 'hello from allowed.test');
      assert.equal(JSON.parse(r.results.get('path')!).code, 'path_not_allowed');
      assert.equal(JSON.parse(r.results.get('method')!).code, 'method_not_allowed');
      assert.equal(JSON.parse(r.results.get('host')!).code, 'host_not_allowed');
      assert.equal(JSON.parse(r.results.get('http')!).code, 'host_not_allowed');
      const redirected = JSON.parse(r.results.get('redirect')!);
      assert.equal(
        redirected.code,
        'host_not_allowed',
        'a redirect to a blocked host is blocked at the second request',
      );
      assert.ok(!r.stdout.includes(CANARY));
      const reached = upstream.received.slice(before);
      assert.ok(
        reached.every((q) => q.host.startsWith('allowed.test')),
        JSON.stringify(reached),
      );
      assert.ok(reached.some((q) => q.url === '/ok'));
      assert.ok(!reached.some((q) => q.url === '/nope'), 'a blocked path never reaches the upstream');
      assert.match(r.stderr, /blocked/i, 'a summary line reports the blocked requests');
    });

    it('git clones an allowed repository over HTTPS', async () => {
      const r = await probe(
        engine,
        'cd /tmp && git clone -q https://git.test/app.git && echo readme=$(cat app/README)',
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.results.get('readme'), 'hi');
    });

    it('names resolve to the proxy; IP literals, other ports, UDP and IPv6 go nowhere', async () => {
      const r = await probe(
        engine,
        [
          'proxy=$(getent hosts random-name-$RANDOM.example | cut -d" " -f1); echo proxy=$proxy',
          'echo same=$(getent hosts another.example | cut -d" " -f1)',
          'echo aaaa=$(getent ahostsv6 v6only.example >/dev/null 2>&1 && echo yes || echo no)',
          'echo direct_ip=$(curl -sS -m 5 -k https://$proxy:8443/ >/dev/null 2>&1; echo $?)',
          'echo ssh_port=$(timeout 5 bash -c "echo > /dev/tcp/$proxy/22" 2>/dev/null && echo open || echo closed)',
          'gw=$(ip route 2>/dev/null | awk "/default/ {print \\$3}")',
          `echo gateway=$([ -z "$gw" ] && echo no-route || (curl -sk -m 5 https://$gw:${upstream.port}/ok >/dev/null 2>&1 && echo reached-host || echo unreachable))`,
          "echo udp=$(timeout 5 python3 -c \"import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(3);s.sendto(b'x',('$proxy',5353));print(s.recv(10))\" 2>/dev/null || echo none)",
          'echo ipv6=$(cat /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null || echo absent)',
          'echo v6addr=$(ip -6 addr 2>/dev/null | grep -c inet6)',
        ].join('\n'),
      );
      assert.equal(r.code, 0, r.stderr);
      const proxy = r.results.get('proxy');
      assert.match(proxy ?? '', /^\d+\.\d+\.\d+\.\d+$/);
      assert.equal(r.results.get('same'), proxy, 'every name answers the proxy address');
      assert.equal(r.results.get('aaaa'), 'no');
      assert.equal(r.results.get('direct_ip'), '7', 'curl: could not connect (nothing listens on other ports)');
      assert.equal(r.results.get('ssh_port'), 'closed');
      // Podman: no route at all. Docker: a route to a gateway address the bridge does not hold (inhibit_ipv4).
      assert.match(
        r.results.get('gateway') ?? '',
        /^(no-route|unreachable)$/,
        'the host is not reachable through the gateway',
      );
      assert.equal(r.results.get('udp'), 'none');
      assert.equal(r.results.get('ipv6'), '1');
      assert.equal(r.results.get('v6addr'), '0');
    });

    it('pip, npm and apt trust the per-run CA with no configuration', async () => {
      const before = upstream.received.length;
      const r = await probe(
        engine,
        [
          'pip3 download --no-deps --no-cache-dir -q --index-url https://pypi.test/simple/ demo-pkg -d /tmp/p > /tmp/pip.out 2>&1',
          'echo pip_tls=$(grep -ciE "certificate|ssl" /tmp/pip.out)',
          'HOME=/tmp npm view demo-pkg --registry https://npm.test/ > /tmp/npm.out 2>&1',
          'echo npm_tls=$(grep -ciE "certificate|self.signed|UNABLE_TO" /tmp/npm.out)',
          'mkdir -p /tmp/apt/lists/partial /tmp/apt/cache/archives/partial',
          'echo "deb [trusted=yes] https://deb.test/debian stable main" > /tmp/apt/sources.list',
          'apt-get -q -o Dir::Etc::SourceList=/tmp/apt/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=/tmp/apt/lists -o Dir::Cache=/tmp/apt/cache -o Debug::NoLocking=1 -o APT::Sandbox::User=root update > /tmp/apt.out 2>&1',
          'echo apt_tls=$(grep -ciE "certificate|handshake" /tmp/apt.out)',
        ].join('\n'),
      );
      assert.equal(r.code, 0, r.stderr);
      for (const tool of ['pip', 'npm', 'apt'])
        assert.equal(r.results.get(`${tool}_tls`), '0', `${tool} reported a TLS problem`);
      const reached = upstream.received.slice(before);
      assert.ok(
        reached.some((q) => q.host.startsWith('pypi.test') && q.url.startsWith('/simple/demo-pkg')),
        'pip reached its index',
      );
      assert.ok(
        reached.some((q) => q.host.startsWith('npm.test') && q.url.startsWith('/demo-pkg')),
        'npm reached its registry',
      );
      assert.ok(
        reached.some((q) => q.host.startsWith('deb.test') && q.url.startsWith('/debian/dists/stable/')),
        'apt reached its mirror',
      );
    });

    it('the CA key is nowhere in the sandbox; the CA certificate is trusted through every bundle path', async () => {
      const r = await probe(
        engine,
        [
          'echo keys=$(grep -rlI "PRIVATE KEY" / --exclude-dir=proc --exclude-dir=sys --exclude-dir=usr --exclude-dir=dev 2>/dev/null | wc -l)',
          'echo bundle=$(grep -c "BEGIN CERTIFICATE" /etc/ssl/certs/ca-certificates.crt)',
          'echo env=$SSL_CERT_FILE,$NODE_EXTRA_CA_CERTS,$REQUESTS_CA_BUNDLE,$GIT_SSL_CAINFO',
          'echo environ_keys=$(cat /proc/*/environ 2>/dev/null | tr "\\0" "\\n" | grep -c "PRIVATE KEY")',
        ].join('\n'),
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.results.get('keys'), '0');
      assert.equal(r.results.get('environ_keys'), '0');
      assert.equal(r.results.get('bundle'), '1');
      assert.equal(
        r.results.get('env'),
        '/etc/airlock/ca.pem,/etc/airlock/ca.pem,/etc/airlock/ca.pem,/etc/airlock/ca.pem',
      );
    });

    it('network log flags: text and JSONL files, live lines, --fail-on-block', async () => {
      const logDir = await mkdtemp(path.join(tmpdir(), 'airlock-netlog-'));
      const text = path.join(logDir, 'net.log');
      const json = path.join(logDir, 'net.jsonl');
      const r = await probe(
        engine,
        'curl -s https://allowed.test/ok >/dev/null; curl -s https://blocked.test/x >/dev/null; true',
        ['--network-log', text, '--network-log-json', json, '--network-log-live', '--fail-on-block'],
      );
      assert.equal(r.code, 3, `--fail-on-block turns a successful run with blocks into exit 3\n${r.stderr}`);
      const textLog = await readFile(text, 'utf8');
      assert.match(textLog, /^ALLOWED GET https:\/\/allowed\.test\/ok -> 200/m);
      assert.match(textLog, /^BLOCKED GET https:\/\/blocked\.test\/x -> 403 \(host_not_allowed\)/m);
      assert.match(textLog, /^DNS A allowed\.test -> /m);
      const records = (await readFile(json, 'utf8'))
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const blocked = records.filter((x) => x.decision === 'blocked');
      assert.equal(blocked.length, 1);
      assert.equal(blocked[0]!.host, 'blocked.test');
      assert.equal(blocked[0]!.v, 1);
      assert.match(r.stderr, /^\[net\] BLOCKED GET https:\/\/blocked\.test\/x/m);
      assert.match(r.stderr, /1 request.* blocked/);
      const clean = await probe(engine, 'curl -s https://allowed.test/ok >/dev/null', ['--fail-on-block']);
      assert.equal(clean.code, 0, clean.stderr);
    });
  });
}

/** `iptables -S FORWARD`, or null where there is no iptables to ask. */
function forwardRules(): string | null {
  try {
    return execFileSync('iptables', ['-w', '5', '-S', 'FORWARD'], { encoding: 'utf8' });
  } catch {
    return null;
  }
}

async function bridgedTrafficFiltered(): Promise<boolean> {
  const listing = forwardRules();
  const filtered = await readFile('/proc/sys/net/bridge/bridge-nf-call-iptables', 'utf8').catch(() => '0');
  return listing !== null && /^-P FORWARD DROP$/m.test(listing) && filtered.trim() === '1';
}

// Docker's daemon sets FORWARD to DROP and loads br_netfilter (as on GitHub's runners); rootful Podman gives an
// --internal network no FORWARD rule, so without airlock's own rule the sandbox cannot reach its proxy at all.
describe('rootful Podman on a host whose firewall drops forwarded traffic (Docker running)', () => {
  it('the sandbox bridge gets one ACCEPT rule for the run, gone afterwards; a dead run’s rule is swept', async (t) => {
    if (process.getuid?.() !== 0 || !(await bridgedTrafficFiltered())) {
      t.skip('this host does not filter bridged traffic with a dropping FORWARD chain (no dockerd running)');
      return;
    }
    const stale = [
      'FORWARD',
      '-i',
      'podman-gone0',
      '-o',
      'podman-gone0',
      '-m',
      'comment',
      '--comment',
      'airlock:airlock-sandbox-net-gone-test',
      '-j',
      'ACCEPT',
    ];
    execFileSync('iptables', ['-w', '5', '-I', ...stale.slice(0, 1), '1', ...stale.slice(1)]);
    let network = null as string | null;
    let seenDuringRun = false;
    const child = spawn(
      process.execPath,
      [
        entry,
        'run',
        '--verbose',
        '--engine',
        'podman',
        '--',
        'bash',
        '-c',
        'echo ok=$(curl -sS https://allowed.test/ok); sleep 2',
      ],
      { cwd: workspace, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      network ??= /ready at \S+ on (\S+)/.exec(stderr)?.[1] ?? null;
    });
    const closed = new Promise<number>((r) => child.on('close', (code) => r(code ?? 1)));
    const watch = setInterval(() => {
      // iptables-nft quotes the comment, iptables-legacy does not.
      if (network && forwardRules()?.replaceAll('"', '').includes(`--comment airlock:${network} -j ACCEPT`)) {
        seenDuringRun = true;
      }
    }, 100);
    const code = await closed;
    clearInterval(watch);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^ok=hello from allowed\.test$/m, 'the sandbox reached its proxy through the bridge');
    assert.ok(network, stderr);
    assert.ok(seenDuringRun, 'an ACCEPT rule for the sandbox bridge existed while the command ran');
    const afterRun = forwardRules() ?? '';
    assert.ok(!afterRun.includes(`airlock:${network}`), 'the run removed its rule');
    assert.ok(!afterRun.includes('airlock:airlock-sandbox-net-gone-test'), 'the sweep removed the dead run’s rule');
  });
});
