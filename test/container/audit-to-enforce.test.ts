/**
 * The audit workflow end to end on real engines (Podman; Docker too with AIRLOCK_TEST_DOCKER=1): a workload that
 * talks to a fake npm registry and a fake API passes under `--audit` with an empty allowlist; `airlock allowlist
 * suggest` turns its log into a compact allowlist (the same one the run wrote, and the same on a second audit run);
 * with that allowlist the same workload passes under `--fail-on-block`, while requests it never made — another host,
 * another method, another path family — stay blocked and never reach the upstream. Fake upstreams run on this
 * machine and are reached through `upstream_hosts: host-gateway:PORT`; no traffic leaves it.
 *
 * And the day-two case: an allowlist that allows part of a command's traffic, including a port it names. Under
 * `--audit` the command's own exit code comes back, the stderr summary counts what would have been blocked (a
 * method, a host on the declared port, an allowed host on another port), and the suggested file — the existing
 * allowlist with entries added — lets exactly those requests through when enforced.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { AllowlistSchema } from '../../src/protocol/allowlist.js';
import { ENGINES, finished, startCli, type SandboxRun } from '../helpers/sandbox-fixture.js';
import { makeTestPki } from '../helpers/tls-fixtures.js';

const PACKAGES = ['lodash', 'express', 'chalk', 'debug', 'ms', 'semver', 'commander', 'left-pad', 'minimist', 'yargs'];
const ISSUES = [1, 2, 3, 4, 5, 6];

interface Upstream {
  port: number;
  received: Array<{ host: string; method: string; url: string }>;
  close(): Promise<void>;
}

/** One HTTPS server for both fake services, told apart by Host: a registry (packuments, tarballs) and an API. */
async function startServices(pki: { certPem: string; keyPem: string }): Promise<Upstream> {
  const received: Upstream['received'] = [];
  const server = https.createServer({ cert: pki.certPem, key: pki.keyPem }, (req, res) => {
    const host = String(req.headers.host ?? '').replace(/:\d+$/, '');
    const url = req.url ?? '/';
    received.push({ host, method: req.method ?? '', url });
    req.resume();
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (host === 'registry.test' && req.method === 'GET') {
      const tarball = /^\/([^/]+)\/-\/([^/]+)-1\.0\.0\.tgz$/.exec(url);
      if (tarball) return void res.end(Buffer.alloc(512, 7));
      const name = url.slice(1);
      if (PACKAGES.includes(name)) {
        return json(200, {
          name,
          versions: { '1.0.0': { dist: { tarball: `https://registry.test/${name}/-/${name}-1.0.0.tgz` } } },
        });
      }
      return json(404, { error: 'not found' });
    }
    if (host === 'api.test') {
      if (req.method === 'GET' && /^\/repos\/acme\/app\/issues(\?page=\d+)?$/.test(url)) return json(200, []);
      if (req.method === 'GET' && /^\/repos\/acme\/app\/issues\/\d+$/.test(url)) return json(200, { number: 1 });
      if (req.method === 'POST' && url === '/repos/acme/app/issues') return json(201, { number: 7 });
      return json(404, { error: 'not found' });
    }
    return json(200, { host, note: 'anything not registry.test or api.test' });
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

/** The workload: what `npm ci` and a test suite talking to an issue tracker do, with curl; fails on any error. */
const WORKLOAD = [
  'set -eu',
  `for p in ${PACKAGES.join(' ')}; do`,
  '  tarball=$(curl -fsS "https://registry.test/$p" | sed -E \'s/.*"tarball":"([^"]+)".*/\\1/\')',
  '  curl -fsS -o /dev/null "$tarball"',
  'done',
  'for page in 1 2 3; do curl -fsS -o /dev/null "https://api.test/repos/acme/app/issues?page=$page"; done',
  `for n in ${ISSUES.join(' ')}; do curl -fsS -o /dev/null "https://api.test/repos/acme/app/issues/$n"; done`,
  'curl -fsS -o /dev/null -X POST -H "Content-Type: application/json" -d \'{"title":"t"}\' https://api.test/repos/acme/app/issues',
  'echo workload=done',
].join('\n');
const WORKLOAD_REQUESTS = PACKAGES.length * 2 + 3 + ISSUES.length + 1;

/** Requests the workload never made: each must stay a 403 under the learned allowlist. */
const UNOBSERVED = {
  host: 'curl -s -o /dev/null -w "%{http_code}" https://other.test/anything',
  method: 'curl -s -o /dev/null -w "%{http_code}" -X DELETE https://api.test/repos/acme/app/issues/1',
  family: 'curl -s -o /dev/null -w "%{http_code}" https://api.test/orgs/acme/secrets',
  upload: 'curl -s -o /dev/null -w "%{http_code}" -X PUT -d x https://registry.test/lodash',
};

/** What the day-two allowlist allows already: GETs of single issues, and svc.test on the port 5000 only. */
const PARTIAL_ALLOWLIST =
  'url_prefixes:\n' +
  '  - {host: api.test, path: "/repos/acme/app/issues/*", methods: [GET]}\n' +
  '  - {host: "svc.test:5000", path: /health, methods: [GET]}\n';

/** The command's requests, by name: two allowed, three that the allowlist refuses for policy reasons. */
const PARTIAL_SEEN: Record<string, string> = {
  issue: 'https://api.test/repos/acme/app/issues/1',
  create: '-X POST -H "Content-Type: application/json" -d {} https://api.test/repos/acme/app/issues',
  health5000: 'https://svc.test:5000/health',
  other5000: 'https://other.test:5000/status',
  health443: 'https://svc.test/health',
};
const PARTIAL_STATUS: Record<string, string> = {
  issue: '200',
  create: '201',
  health5000: '200',
  other5000: '200',
  health443: '200',
};
const PARTIAL_RECEIVED = [
  'GET api.test/repos/acme/app/issues/1',
  'POST api.test/repos/acme/app/issues',
  'GET svc.test/health',
  'GET other.test/status',
  'GET svc.test/health',
];
/** Next to what was seen, never seen: another port, another path on the learned port, another method. */
const PARTIAL_NEAR: Record<string, string> = {
  other443: 'https://other.test/status',
  otherPath: 'https://other.test:5000/admin',
  put: '-X PUT -d {} https://api.test/repos/acme/app/issues',
};

/** A bash script that prints `name=<HTTP status>` for each request, in order. */
function probe(requests: Record<string, string>): string {
  return Object.entries(requests)
    .map(([name, args]) => `echo ${name}=$(curl -s -o /dev/null -w "%{http_code}" ${args})`)
    .join('\n');
}

let services: Upstream;
let root: string;

before(async () => {
  const pki = await makeTestPki(['registry.test', 'api.test', 'other.test', 'svc.test']);
  services = await startServices(pki);
  root = await mkdtemp(path.join(tmpdir(), 'airlock-audit-'));
  await writeFile(path.join(root, 'upstream-ca.pem'), pki.caPem);
});

after(async () => {
  await services?.close();
  await rm(root, { recursive: true, force: true });
});

async function workspace(name: string, allowlist: string | null): Promise<string> {
  const dir = path.join(root, name);
  await mkdir(path.join(dir, '.airlock'), { recursive: true });
  await writeFile(path.join(dir, '.airlock/upstream-ca.pem'), await readFile(path.join(root, 'upstream-ca.pem')));
  await writeFile(
    path.join(dir, '.airlock/sandbox.yaml'),
    [
      'upstream_ca_file: upstream-ca.pem',
      'upstream_hosts:',
      ...['registry.test', 'api.test', 'other.test', 'svc.test'].map((h) => `  ${h}: host-gateway:${services.port}`),
      '',
    ].join('\n'),
  );
  if (allowlist !== null) await writeFile(path.join(dir, '.airlock/network-allowlist.yaml'), allowlist);
  await writeFile(path.join(dir, 'workload.sh'), WORKLOAD);
  return dir;
}

function airlock(args: string[], cwd: string): Promise<SandboxRun> {
  return finished(startCli(args, cwd));
}

for (const engine of ENGINES) {
  void describe(`audit → suggest → enforce on ${engine}`, { timeout: 600_000 }, () => {
    let suggested: string;

    void it('under --audit with an empty allowlist the workload passes, and the run writes a suggestion', async () => {
      const dir = await workspace(`${engine}-audit`, null);
      const before = services.received.length;
      const r = await airlock(
        [
          'run',
          '--engine',
          engine,
          '--audit',
          '--network-log-json',
          'net.jsonl',
          '--audit-allowlist',
          'suggested.yaml',
          '--',
          'bash',
          'workload.sh',
        ],
        dir,
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.results.get('workload'), 'done');
      assert.equal(services.received.length - before, WORKLOAD_REQUESTS, 'every request reached the services');
      assert.match(
        r.stderr,
        new RegExp(
          `airlock: audit: ${WORKLOAD_REQUESTS} requests would have been blocked; suggested allowlist: ${path.join(dir, 'suggested.yaml').replace(/[.]/g, '\\.')}\\n`,
        ),
      );
      assert.match(r.stderr, /airlock: image [^\n]*: the host-toolchain default/, 'the run says which image and why');
      const log = await readFile(path.join(dir, 'net.jsonl'), 'utf8');
      const records = log
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const requests = records.filter((x) => x.event === 'request');
      assert.equal(requests.length, WORKLOAD_REQUESTS);
      assert.ok(
        requests.every(
          (x) => x.decision === 'would_block' && x.code === 'host_not_allowed' && typeof x.hint === 'string',
        ),
      );

      // `allowlist suggest` on the log gives the very file the run wrote: compact, and a valid allowlist.
      const s = await airlock(['allowlist', 'suggest', 'net.jsonl'], dir);
      assert.equal(s.code, 0, s.stderr);
      suggested = await readFile(path.join(dir, 'suggested.yaml'), 'utf8');
      assert.equal(s.stdout, suggested);
      const allowlist = AllowlistSchema.parse(parse(suggested));
      const entries = allowlist.domains.length + allowlist.url_prefixes.length;
      assert.ok(entries <= 5, `${entries} entries for ${WORKLOAD_REQUESTS} requests:\n${suggested}`);
      assert.ok(!allowlist.domains.includes('*') && allowlist.url_prefixes.every((e) => e.host !== '*'));
      const check = await airlock(['config', 'check', '--allowlist', 'suggested.yaml'], dir);
      assert.equal(check.code, 0, check.stderr);
      assert.equal(check.stderr, '', 'the suggestion passes the linter without a warning');
    });

    void it('the suggestion is stable: a second audit run of the same workload suggests the same file', async () => {
      const dir = await workspace(`${engine}-audit-again`, null);
      const r = await airlock(
        ['run', '--engine', engine, '--audit', '--audit-allowlist', 'again.yaml', '--', 'bash', 'workload.sh'],
        dir,
      );
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await readFile(path.join(dir, 'again.yaml'), 'utf8'), suggested);
    });

    void it('with the suggestion committed, the workload passes under --fail-on-block; what it never did stays blocked', async () => {
      const dir = await workspace(`${engine}-enforce`, suggested);
      const r = await airlock(['run', '--engine', engine, '--fail-on-block', '--', 'bash', 'workload.sh'], dir);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.results.get('workload'), 'done');
      assert.doesNotMatch(r.stderr, /blocked/);

      const before = services.received.length;
      const probes = Object.entries(UNOBSERVED)
        .map(([name, cmd]) => `echo ${name}=$(${cmd})`)
        .join('\n');
      const blocked = await airlock(['run', '--engine', engine, '--fail-on-block', '--', 'bash', '-c', probes], dir);
      for (const name of Object.keys(UNOBSERVED))
        assert.equal(blocked.results.get(name), '403', `${name}: ${blocked.stdout}`);
      assert.equal(services.received.length, before, 'no unobserved request reached a service');
      assert.equal(blocked.code, 3, 'the command succeeded but requests were blocked: --fail-on-block exits 3');
      assert.match(blocked.stderr, /4 requests were blocked by the network allowlist/);
    });

    void it('a partial allowlist: allowed + would-be-blocked requests, the command’s exit code, the summary, and a suggestion that lets exactly those through', async () => {
      const dir = await workspace(`${engine}-partial`, PARTIAL_ALLOWLIST);
      const before = services.received.length;
      const r = await airlock(
        [
          'run',
          '--engine',
          engine,
          '--audit',
          '--audit-allowlist',
          'suggested.yaml',
          '--',
          'bash',
          '-c',
          `${probe(PARTIAL_SEEN)}\nexit 7`,
        ],
        dir,
      );
      assert.equal(r.code, 7, `the command's exit code, not airlock's:\n${r.stderr}`);
      for (const [name, status] of Object.entries(PARTIAL_STATUS)) {
        assert.equal(r.results.get(name), status, `${name} in audit mode:\n${r.stdout}`);
      }
      assert.equal(services.received.length - before, Object.keys(PARTIAL_SEEN).length, 'all of them reached it');
      const file = path.join(dir, 'suggested.yaml');
      assert.match(
        r.stderr,
        new RegExp(
          `\\nairlock: audit: 3 requests would have been blocked; suggested allowlist: ${file.replace(/[.]/g, '\\.')}\\n`,
        ),
      );
      const text = await readFile(file, 'utf8');
      assert.ok(text.startsWith(PARTIAL_ALLOWLIST.trimEnd()), `the existing entries come first, unchanged:\n${text}`);
      const hosts = AllowlistSchema.parse(parse(text)).url_prefixes.map(
        (e) => `${e.host} ${e.path} ${e.methods.join(',')}`,
      );
      assert.deepEqual(hosts, [
        'api.test /repos/acme/app/issues/* GET',
        'svc.test:5000 /health GET',
        'api.test /repos/acme/app/issues POST',
        'other.test:5000 /status GET',
        'svc.test /health GET',
      ]);

      // Enforced: the same requests pass, and requests next to them (another port, method or path) are refused.
      await writeFile(path.join(dir, '.airlock/network-allowlist.yaml'), text);
      const sent = services.received.length;
      const enforced = await airlock(
        ['run', '--engine', engine, '--fail-on-block', '--', 'bash', '-c', probe({ ...PARTIAL_SEEN, ...PARTIAL_NEAR })],
        dir,
      );
      for (const [name, status] of Object.entries(PARTIAL_STATUS)) {
        assert.equal(enforced.results.get(name), status, `${name} enforced:\n${enforced.stdout}`);
      }
      for (const name of Object.keys(PARTIAL_NEAR)) assert.equal(enforced.results.get(name), '403', name);
      assert.deepEqual(
        services.received.slice(sent).map((q) => `${q.method} ${q.host}${q.url}`),
        PARTIAL_RECEIVED,
        'exactly the observed requests reached the services',
      );
      assert.equal(enforced.code, 3, `--fail-on-block: the near misses were blocked\n${enforced.stderr}`);
      assert.match(enforced.stderr, /3 requests were blocked by the network allowlist/);
    });

    void it('in a local run the sandbox cannot rewrite the policy the next run reads', async () => {
      const policy = 'url_prefixes:\n  - {host: api.test, path: /repos/*, methods: [GET]}\n';
      const dir = await workspace(`${engine}-guard`, policy);
      const r = await airlock(
        [
          'run',
          '--engine',
          engine,
          '--',
          'bash',
          '-c',
          'echo "domains: [\\"*\\"]" > /workspace/.airlock/network-allowlist.yaml 2>/dev/null; echo allowlist=$?; ' +
            'touch /workspace/.airlock/new 2>/dev/null; echo create=$?; ' +
            // .airut/ does not exist here: a new one would be read by the next run if .airlock/ were gone.
            'mkdir -p /workspace/.airut/x 2>/dev/null; echo airut=$?; ' +
            'echo ok > /workspace/out.txt; echo workspace=$?',
        ],
        dir,
      );
      assert.equal(r.code, 0, r.stderr);
      assert.notEqual(r.results.get('allowlist'), '0');
      assert.notEqual(r.results.get('create'), '0');
      assert.notEqual(r.results.get('airut'), '0', 'the sandbox cannot create a policy directory either');
      assert.ok(!existsSync(path.join(dir, '.airut')), 'the empty mount point is removed after the run');
      assert.equal(r.results.get('workspace'), '0', 'the rest of the workspace stays writable');
      assert.equal(await readFile(path.join(dir, '.airlock/network-allowlist.yaml'), 'utf8'), policy);
    });
  });
}
