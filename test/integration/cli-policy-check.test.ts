import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

// Runs the *built* package the way a user does: `node <bin.airlock> …` (npm test builds first).
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { bin: { airlock: string } };
const bin = path.join(root, pkg.bin.airlock);

function airlock(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [bin, ...args], {
    cwd,
    env: { PATH: process.env.PATH, ...env },
    encoding: 'utf8',
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let cwd: string;
before(async () => {
  assert.ok(existsSync(bin), `${bin} is missing: run npm run build`);
  cwd = await mkdtemp(path.join(tmpdir(), 'airlock-cli-'));
  await mkdir(path.join(cwd, '.airlock'));
  await writeFile(
    path.join(cwd, '.airlock/network-allowlist.yaml'),
    'domains: [pypi.org, "registry.internal:5000"]\nurl_prefixes:\n  - {host: api.github.com, path: /repos/acme/*, methods: [GET]}\n' +
      '  - {host: api.github.com, path: /graphql, methods: [POST], graphql: {queries: [viewer]}}\n',
  );
  await writeFile(
    path.join(cwd, '.airlock/sandbox.yaml'),
    'masked_secrets:\n  T: {value: !env NOT_SET, scopes: [a], headers: [b]}\n',
  );
});

describe('airlock policy check (built package)', () => {
  it('prints ALLOWED with the rule and exits 0', () => {
    const r = airlock(['policy', 'check', 'GET', 'https://api.github.com/repos/acme/x'], cwd);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, 'ALLOWED url_prefixes[0] api.github.com /repos/acme/* methods=GET\n');
  });
  it('prints BLOCKED with the code and exits 1; needs no secrets from sandbox.yaml', () => {
    const r = airlock(['policy', 'check', 'POST', 'https://api.github.com/repos/acme/x'], cwd);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^BLOCKED method_not_allowed: /);
    assert.equal(r.stdout.split('\n').length, 2, 'exactly one line');
  });
  it('judges the port the URL names (else the scheme’s default), as the proxy judges its listener’s', () => {
    const at = (url: string) => airlock(['policy', 'check', 'GET', url], cwd);
    assert.equal(at('https://registry.internal:5000/v2/').stdout, 'ALLOWED domains[1] registry.internal:5000\n');
    assert.equal(at('http://registry.internal:5000/v2/').code, 0);
    assert.match(at('https://registry.internal/v2/').stdout, /^BLOCKED port_not_allowed: .*"registry\.internal"/);
    assert.match(at('https://pypi.org:8443/simple/').stdout, /^BLOCKED port_not_allowed: .*"pypi\.org:8443"/);
    assert.match(at('http://pypi.org/simple/').stdout, /^ALLOWED domains\[0\] pypi\.org/);
    assert.match(at('http://pypi.org:443/simple/').stdout, /^BLOCKED port_not_allowed/);
  });
  it('judges the raw path: traversal hidden by URL normalisation is still seen', () => {
    const r = airlock(['policy', 'check', 'GET', 'https://api.github.com/repos/acme/../../admin'], cwd);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^BLOCKED invalid_path/);
  });
  it('--json prints the decision as JSON', () => {
    const r = airlock(['policy', 'check', '--json', 'GET', 'https://evil.example/x'], cwd);
    assert.equal(r.code, 1);
    const d = JSON.parse(r.stdout);
    assert.equal(d.allowed, false);
    assert.equal(d.code, 'host_not_allowed');
    assert.equal(d.host, 'evil.example');
    assert.match(d.hint, /evil\.example/);
  });
  it('usage errors exit 2, config errors 125', async () => {
    assert.equal(airlock(['policy', 'check', 'GET'], cwd).code, 2);
    assert.equal(airlock(['policy', 'check', '--bogus', 'GET', 'https://a/'], cwd).code, 2);
    assert.equal(airlock(['policy', 'check', 'GET', 'ftp://a/'], cwd).code, 2);
    assert.equal(airlock(['policy', 'check', '--allowlist', 'missing.yaml', 'GET', 'https://a/'], cwd).code, 125);
    const bad = await mkdtemp(path.join(tmpdir(), 'airlock-cli-bad-'));
    await mkdir(path.join(bad, '.airlock'));
    await writeFile(path.join(bad, '.airlock/network-allowlist.yaml'), 'domain: [x]\n');
    const r = airlock(['policy', 'check', 'GET', 'https://a/'], bad);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /network-allowlist\.yaml:1:1: domain: unknown key 'domain'; did you mean 'domains'\?/);
  });
});

describe('airlock policy check --data: the GraphQL filter, offline', () => {
  const url = 'https://api.github.com/graphql';
  it('says the body decides when an entry filters GraphQL and no --data is given', () => {
    const r = airlock(['policy', 'check', 'POST', url], cwd);
    assert.equal(r.code, 0);
    assert.match(
      r.stdout,
      /^ALLOWED url_prefixes\[1\] api\.github\.com \/graphql methods=POST \+graphql filter \(the body must also pass/,
    );
  });
  it('judges a body exactly as the proxy does', () => {
    const ok = airlock(['policy', 'check', '--data', '{"query":"{ viewer { login } }"}', 'POST', url], cwd);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /\(graphql query: viewer\)$/m);
    const bad = airlock(
      ['policy', 'check', '--data', '{"query":"mutation { deleteRepository { id } }"}', 'POST', url],
      cwd,
    );
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /^BLOCKED graphql_operation_blocked: GraphQL operation 'mutation:<blocked>'/);
    assert.match(bad.stdout, /list the mutation fields to allow in graphql\.mutations of url_prefixes\[1\]/);
    const json = airlock(['policy', 'check', '--json', '--data', '[]', 'POST', url], cwd);
    assert.equal(json.code, 1);
    const parsed = JSON.parse(json.stdout) as { allowed: boolean; code: string; graphql: { detail: string } };
    assert.deepEqual(
      [parsed.allowed, parsed.code, parsed.graphql.detail],
      [false, 'graphql_operation_blocked', '<batched>'],
    );
  });
});

describe('airlock config check (built package)', () => {
  it('exits 125 naming the missing variable, 0 with the value redacted once it is set', () => {
    const bad = airlock(['config', 'check'], cwd);
    assert.equal(bad.code, 125);
    assert.match(bad.stderr, /environment variable 'NOT_SET' is not set/);
    const secret = 'ghp_0123456789abcdefghijABCDEFGHIJ012345';
    const ok = airlock(['config', 'check'], cwd, { NOT_SET: secret });
    assert.equal(ok.code, 0);
    assert.ok(!ok.stdout.includes(secret) && !ok.stderr.includes(secret), 'the secret is never printed');
    assert.match(ok.stdout, /redacted: 40 chars, from \$NOT_SET; surrogate: ghp_ \+ 36 chars \[A-Za-z0-9\]/);
  });
});

describe('airlock config check: the policy linter (built package)', () => {
  async function workspace(files: Record<string, string>): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), 'airlock-lint-'));
    for (const [name, text] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
      await writeFile(path.join(dir, name), text);
    }
    return dir;
  }
  it('reports every error in every file in one run, each with file:line:col, and exits 125', async () => {
    const dir = await workspace({
      '.airlock/sandbox.yaml': 'env:\n  A: !env NOT_SET_ANYWHERE\nresource_limits: {timeout: 3, memroy: 2g}\n',
      '.airlock/network-allowlist.yaml': [
        'domains: ["*", "https://github.com"]',
        'url_prefixes:',
        '  - {host: api.github.com, path: "/repos/[*", methods: [GTE]}',
        '  - {host: api.github.com, path: /x, methods: [GET]}',
        '  - {host: api.github.com, path: /x, methods: [get]}',
        '',
      ].join('\n'),
      '.airlock/container/README': 'no image definition here\n',
    });
    const r = airlock(['config', 'check'], dir);
    assert.equal(r.code, 125, r.stderr);
    const lines = r.stderr.trim().split('\n');
    const expected = [
      /sandbox\.yaml:2:\d+: env\.A: environment variable 'NOT_SET_ANYWHERE' is not set/,
      /sandbox\.yaml:3:\d+: resource_limits\.timeout: timeout must be at least 10 seconds/,
      /sandbox\.yaml:3:\d+: resource_limits\.memroy: unknown key 'memroy'; did you mean 'memory'\?/,
      /network-allowlist\.yaml:1:11: domains\.0: a bare "\*" allows every host/,
      /network-allowlist\.yaml:1:16: domains\.1: "https:\/\/github\.com" is a URL/,
      /network-allowlist\.yaml:3:\d+: url_prefixes\.0\.path: .*never closed/,
      /network-allowlist\.yaml:3:\d+: url_prefixes\.0\.methods\.0: unknown HTTP method "GTE"; did you mean GET\?/,
      /network-allowlist\.yaml:5:5: url_prefixes\.2: duplicate of url_prefixes\[1\]/,
      /container: the container directory has no Containerfile or Dockerfile/,
    ];
    for (const re of expected)
      assert.ok(
        lines.some((l) => re.test(l)),
        `missing ${re}:\n${r.stderr}`,
      );
    assert.match(r.stderr, /airlock: 9 errors in the policy/);
    assert.equal(r.stdout, '', 'nothing resolved is printed for an invalid policy');
  });
  it('ports: valid ones pass; a port that is not one number, or out of range, is an error at its file:line:col', async () => {
    const good = await workspace({
      '.airlock/network-allowlist.yaml':
        'domains: ["registry.internal:5000", "[fd00::1]:8443"]\nurl_prefixes:\n  - {host: "git.corp.internal:8443", path: /x}\n',
    });
    const ok = airlock(['config', 'check'], good);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stderr, '');
    const bad = await workspace({
      '.airlock/network-allowlist.yaml':
        'domains: ["registry.internal:abc"]\nurl_prefixes:\n  - {host: "git.internal:8443:9443", path: /x}\n',
    });
    const r = airlock(['config', 'check'], bad);
    assert.equal(r.code, 125, r.stderr);
    assert.match(
      r.stderr,
      /network-allowlist\.yaml:1:11: domains\.0: "registry\.internal:abc": the port "abc" is not a number/,
    );
    assert.match(
      r.stderr,
      /network-allowlist\.yaml:3:\d+: url_prefixes\.0\.host: "git\.internal:8443:9443" has more than one ":"/,
    );
    const range = await workspace({ '.airlock/network-allowlist.yaml': 'domains:\n  - "registry.internal:70000"\n' });
    const out = airlock(['config', 'check'], range);
    assert.equal(out.code, 125, out.stderr);
    assert.match(
      out.stderr,
      /network-allowlist\.yaml:2:5: domains\.0: the port in "registry\.internal:70000" must be between 1 and 65535/,
    );
  });
  it('prints warnings on stderr and still exits 0', async () => {
    const dir = await workspace({
      '.airlock/network-allowlist.yaml':
        'domains: ["*.io", api.github.com]\nurl_prefixes:\n  - {host: api.github.com, path: /graphql, methods: [POST]}\n  - {host: "*", methods: [GET]}\n',
    });
    const r = airlock(['config', 'check'], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /airlock: warning: .*network-allowlist\.yaml:1:11: domains\.0: "\*\.io" allows far more/);
    assert.match(r.stderr, /airlock: warning: .*network-allowlist\.yaml:3:5: url_prefixes\.0: domains\[1\]/);
    assert.match(r.stderr, /airlock: warning: .*network-allowlist\.yaml:4:\d+: url_prefixes\.1\.host: host "\*"/);
  });
  it("reads Airut's .airut/ unchanged: a bare * there is a warning, and allow_all: true silences it in .airlock/", async () => {
    const airut = await workspace({ '.airut/network-allowlist.yaml': 'domains: ["*"]\n' });
    const a = airlock(['config', 'check'], airut);
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stderr, /warning: .*bare "\*".*Airut file/);
    const explicit = await workspace({ '.airlock/network-allowlist.yaml': 'allow_all: true\ndomains: ["*"]\n' });
    const b = airlock(['config', 'check'], explicit);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(b.stderr, '');
  });
  it('a Containerfile is the image definition, like a Dockerfile', async () => {
    const dir = await workspace({ '.airlock/container/Containerfile': 'FROM scratch\n' });
    const r = airlock(['config', 'check', '--json'], dir);
    assert.equal(r.code, 0, r.stderr);
    const view = JSON.parse(r.stdout) as { sources: { dockerfile: string } };
    assert.equal(view.sources.dockerfile, path.join(dir, '.airlock/container/Containerfile'));
  });
});
