import assert from 'node:assert/strict';
import { mkdtemp, mkdir, writeFile, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadPolicy } from '../../src/cli/config/load.js';
import { ConfigError } from '../../src/cli/errors.js';
import { decide } from '../../src/protocol/policy.js';

const here = path.dirname(fileURLToPath(import.meta.url));

async function repo(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'airlock-config-'));
  for (const [name, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), text);
  }
  return dir;
}

async function configError(files: Record<string, string>, env: NodeJS.ProcessEnv = {}): Promise<ConfigError> {
  const cwd = await repo(files);
  try {
    await loadPolicy({ cwd }, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.exitCode, 125);
    return err;
  }
  assert.fail('the config loaded but should have been refused');
}

describe('config discovery', () => {
  it('with no config directory everything is default: sandbox on, nothing allowed', async () => {
    const p = await loadPolicy({ cwd: await repo({}) }, {});
    assert.equal(p.layout, 'none');
    assert.equal(p.sandbox.network_sandbox, true);
    assert.deepEqual(p.sandbox.env, {});
    assert.deepEqual(p.allowlist, { domains: [], url_prefixes: [] });
    assert.equal(p.build, null);
  });
  it("reads Airut's own .airut/ files unchanged", async () => {
    const cwd = await mkdtemp(path.join(tmpdir(), 'airlock-airut-'));
    await cp(path.join(here, '../fixtures/airut/.airut'), path.join(cwd, '.airut'), { recursive: true });
    const p = await loadPolicy({ cwd }, {});
    assert.equal(p.layout, 'airut');
    assert.deepEqual(p.sandbox.env, { CI: 'true', PYTHONDONTWRITEBYTECODE: '1' });
    assert.equal(p.allowlist.url_prefixes.length, 24);
    assert.equal(p.build?.dockerfile, path.join(cwd, '.airut/container/Dockerfile'));
    assert.equal(p.build?.contextDir, path.join(cwd, '.airut/container'));
    const req = (method: string, host: string, target: string) => decide({ method, host, target }, p.allowlist).allowed;
    assert.equal(req('POST', 'api.anthropic.com', '/v1/messages'), true);
    assert.equal(req('POST', 'api.anthropic.com', '/v1/files'), false);
    assert.equal(req('GET', 'pypi.org', '/simple/zod/'), true);
    assert.equal(req('POST', 'pypi.org', '/legacy/'), false);
    assert.equal(req('DELETE', 'api.github.com', '/repos/airutorg/airut/issues/1'), true);
  });
  it('.airlock/ wins when both .airlock/ and .airut/ exist', async () => {
    const cwd = await repo({
      '.airlock/network-allowlist.yaml': 'domains: [airlock.example]\n',
      '.airut/network-allowlist.yaml': 'domains: [airut.example]\n',
    });
    const p = await loadPolicy({ cwd }, {});
    assert.equal(p.layout, 'airlock');
    assert.deepEqual(p.allowlist.domains, ['airlock.example']);
  });
  it('--config-dir and single-file overrides take precedence; named files must exist', async () => {
    const cwd = await repo({
      'policy/network-allowlist.yaml': 'domains: [dir.example]\n',
      'other.yaml': 'domains: [file.example]\n',
      '.airlock/network-allowlist.yaml': 'domains: [default.example]\n',
    });
    assert.deepEqual((await loadPolicy({ cwd, configDir: 'policy' }, {})).allowlist.domains, ['dir.example']);
    assert.deepEqual((await loadPolicy({ cwd, allowlist: 'other.yaml' }, {})).allowlist.domains, ['file.example']);
    await assert.rejects(loadPolicy({ cwd, allowlist: 'missing.yaml' }, {}), /does not exist/);
    await assert.rejects(loadPolicy({ cwd, config: 'missing.yaml' }, {}), /does not exist/);
    await assert.rejects(loadPolicy({ cwd, configDir: 'nope' }, {}), /not a directory/);
  });
  it('the build context defaults to the Dockerfile directory', async () => {
    const cwd = await repo({ '.airlock/container/Dockerfile': 'FROM x\n', 'ctx/file': 'x' });
    const p = await loadPolicy({ cwd }, {});
    assert.equal(p.build?.contextDir, path.join(cwd, '.airlock/container'));
    const q = await loadPolicy({ cwd, contextDir: 'ctx' }, {});
    assert.equal(q.build?.contextDir, path.join(cwd, 'ctx'));
  });
});

describe('sandbox.yaml', () => {
  it('resolves !env from the host environment and remembers the variable names', async () => {
    const cwd = await repo({
      '.airlock/sandbox.yaml': [
        'env: {MODE: !env MODE, EMPTY: !env EMPTY}',
        'masked_secrets:',
        '  GH_TOKEN: {value: !env GH_REAL, scopes: [api.github.com], headers: [Authorization]}',
        'signing_credentials:',
        '  aws: {type: aws-sigv4, access_key_id: !env MY_KEY, secret_access_key: !env MY_SECRET, scopes: ["*.amazonaws.com"]}',
        '',
      ].join('\n'),
    });
    const env = { MODE: 'ci', EMPTY: '', GH_REAL: 'ghp_x', MY_KEY: 'AKIA1', MY_SECRET: 's' };
    const p = await loadPolicy({ cwd }, env);
    assert.deepEqual(p.sandbox.env, { MODE: 'ci', EMPTY: '' });
    assert.equal(p.sandbox.masked_secrets.GH_TOKEN?.value, 'ghp_x');
    assert.equal(p.envRefs.get('masked_secrets.GH_TOKEN.value'), 'GH_REAL');
    assert.equal(p.envRefs.get('signing_credentials.aws.access_key_id'), 'MY_KEY');
    assert.equal(p.sandbox.masked_secrets.GH_TOKEN?.allow_foreign_credentials, false);
  });
  it('a missing !env variable is fatal and names file:line:col and the key', async () => {
    const err = await configError({
      '.airlock/sandbox.yaml':
        'masked_secrets:\n  T:\n    value: !env NOT_SET_ANYWHERE\n    scopes: [a]\n    headers: [b]\n',
    });
    assert.match(
      err.message,
      /sandbox\.yaml:3:\d+: masked_secrets\.T\.value: environment variable 'NOT_SET_ANYWHERE' is not set/,
    );
  });
  it('unknown keys are errors with a suggestion', async () => {
    const err = await configError({ '.airlock/sandbox.yaml': 'network_sanbox: false\n' });
    assert.match(
      err.message,
      /sandbox\.yaml:1:1: network_sanbox: unknown key 'network_sanbox'; did you mean 'network_sandbox'\?/,
    );
    const nested = await configError({ '.airlock/sandbox.yaml': 'resource_limits:\n  memroy: 1g\n' });
    assert.match(nested.message, /:2:3: resource_limits\.memroy: unknown key 'memroy'; did you mean 'memory'\?/);
  });
  it('keeps values that are strings by nature as written (no YAML 1.1 re-typing)', async () => {
    const cwd = await repo({
      '.airlock/sandbox.yaml': 'env:\n  N: 010\n  ON: yes\n  F: 1.0\nnetwork_sandbox: "off"\n',
    });
    const p = await loadPolicy({ cwd }, {});
    assert.deepEqual(p.sandbox.env, { N: '010', ON: 'yes', F: '1.0' });
    assert.equal(p.sandbox.network_sandbox, false);
  });
  it('resource limits: numbers as strings are accepted, Airut validation bounds apply', async () => {
    const cwd = await repo({
      '.airlock/sandbox.yaml':
        'resource_limits: {timeout: "300", memory: 2g, disk: 512M, cpus: 1.5, pids_limit: 100}\n',
    });
    assert.deepEqual((await loadPolicy({ cwd }, {})).sandbox.resource_limits, {
      timeout: 300,
      memory: '2g',
      disk: '512M',
      cpus: 1.5,
      pids_limit: 100,
      require: false,
    });
    for (const [bad, msg] of [
      ['timeout: 5', /at least 10/],
      ['memory: 512', /expected a size such as/],
      ['memory: 0m', /greater than zero/],
      ['disk: 1024', /expected a size such as/],
      ['disk: 1023k', /at least 1m/],
      ['disk: 2.5g', /expected a size such as/],
      ['cpus: 0.001', /at least 0\.01/],
      ['pids_limit: 0', /at least 1/],
      ['timeout: 10.5', /whole number/],
    ] as const) {
      const err = await configError({ '.airlock/sandbox.yaml': `resource_limits:\n  ${bad}\n` });
      assert.match(err.message, /sandbox\.yaml:2:\d+: resource_limits\./);
      assert.match(err.message, msg);
    }
  });
  it('resource_limits.require: an airlock key, false unless set, YAML-1.1 spellings of a boolean accepted', async () => {
    const defaults = await loadPolicy({ cwd: await repo({ '.airlock/sandbox.yaml': 'env: {}\n' }) }, {});
    assert.equal(defaults.sandbox.resource_limits.require, false);
    for (const [written, value] of [
      ['true', true],
      ['"yes"', true],
      ['"off"', false],
    ] as const) {
      const cwd = await repo({ '.airlock/sandbox.yaml': `resource_limits:\n  require: ${written}\n` });
      assert.equal((await loadPolicy({ cwd }, {})).sandbox.resource_limits.require, value, written);
    }
    const err = await configError({ '.airlock/sandbox.yaml': 'resource_limits:\n  require: maybe\n' });
    assert.match(err.message, /sandbox\.yaml:2:\d+: resource_limits\.require: expected true or false/);
  });
  it('type errors say what was found and what is expected', async () => {
    assert.match(
      (await configError({ '.airlock/sandbox.yaml': 'env: [A]\n' })).message,
      /:1:6: env: expected a mapping \(key: value\), found a list/,
    );
    assert.match(
      (await configError({ '.airlock/sandbox.yaml': 'pass_env: HOME\n' })).message,
      /pass_env: expected a list/,
    );
    assert.match(
      (await configError({ '.airlock/sandbox.yaml': 'network_sandbox: maybe\n' })).message,
      /network_sandbox: expected true or false/,
    );
    assert.match((await configError({ '.airlock/sandbox.yaml': 'env:\n  A:\n' })).message, /env\.A: value is missing/);
  });
  it('masked secrets need non-empty scopes and headers; allow_foreign_credentials is a real boolean', async () => {
    const e1 = await configError({
      '.airlock/sandbox.yaml': 'masked_secrets:\n  T: {value: x, scopes: [], headers: [A]}\n',
    });
    assert.match(e1.message, /masked_secrets\.T\.scopes: scopes must list at least one pattern/);
    const e2 = await configError({
      '.airlock/sandbox.yaml':
        'masked_secrets:\n  T: {value: x, scopes: [a], headers: [A], allow_foreign_credentials: "maybe"}\n',
    });
    assert.match(e2.message, /allow_foreign_credentials: expected true or false/);
  });
  it('signing credentials must be type aws-sigv4', async () => {
    const err = await configError({
      '.airlock/sandbox.yaml':
        'signing_credentials:\n  a: {type: gcp, access_key_id: k, secret_access_key: s, scopes: [x]}\n',
    });
    assert.match(err.message, /signing_credentials\.a\.type: .*aws-sigv4/);
  });
  it('rejects unknown tags, duplicate keys, non-mapping roots and broken YAML with a position', async () => {
    assert.match(
      (await configError({ '.airlock/sandbox.yaml': 'env: !secret x\n' })).message,
      /sandbox\.yaml:1:6: invalid YAML: Unresolved tag: !secret/,
    );
    assert.match(
      (await configError({ '.airlock/sandbox.yaml': 'env: {}\nenv: {}\n' })).message,
      /sandbox\.yaml:2:1: invalid YAML: Map keys must be unique/,
    );
    assert.match((await configError({ '.airlock/sandbox.yaml': '- a\n' })).message, /must be a mapping/);
    assert.match(
      (await configError({ '.airlock/sandbox.yaml': 'env: {a: [\n' })).message,
      /sandbox\.yaml:\d+:\d+: invalid YAML/,
    );
    assert.match(
      (await configError({ '.airlock/network-allowlist.yaml': 'domains: !env X\n' })).message,
      /this file takes no tags/,
    );
  });
  it('never prints a secret value in an error', async () => {
    const secret = 'ghp_SUPERSECRETVALUE1234567890abcdefghij';
    const err = await configError(
      { '.airlock/sandbox.yaml': 'masked_secrets:\n  T:\n    value: !env S\n    scopes: [a]\n    headers: 7\n' },
      { S: secret },
    );
    assert.ok(!err.message.includes(secret));
    const err2 = await configError({ '.airlock/sandbox.yaml': `env:\n  A: {nested: ${secret}}\n` });
    assert.ok(!err2.message.includes(secret));
  });
  it('upstream settings are validated', async () => {
    const cwd = await repo({
      '.airlock/sandbox.yaml':
        'upstream_dns: 10.0.0.53\nupstream_hosts: {git.internal: "10.0.0.5:8443", v6.internal: "[fd00::1]:443"}\n',
    });
    const p = await loadPolicy({ cwd }, {});
    assert.deepEqual(p.sandbox.upstream_dns, ['10.0.0.53']);
    assert.equal(p.sandbox.upstream_hosts['git.internal'], '10.0.0.5:8443');
    const ported = await repo({
      '.airlock/sandbox.yaml': 'upstream_dns: ["10.0.0.53:5353", "[fd00::53]:53", fd00::54]\n',
    });
    assert.deepEqual((await loadPolicy({ cwd: ported }, {})).sandbox.upstream_dns, [
      '10.0.0.53:5353',
      '[fd00::53]:53',
      'fd00::54',
    ]);
    for (const bad of ['"10.0.0.53:0"', '"10.0.0.53:70000"', 'dns.example', '"fd00::53:53:x"', '"[10.0.0.1]:53"']) {
      assert.match(
        (await configError({ '.airlock/sandbox.yaml': `upstream_dns: ${bad}\n` })).message,
        /upstream_dns.*resolver IP addresses, optionally with a port/,
        bad,
      );
    }
    assert.match(
      (await configError({ '.airlock/sandbox.yaml': 'upstream_hosts: {a.b: not-an-ip}\n' })).message,
      /upstream_hosts\.a\.b.*expected an IP address/,
    );
    assert.match(
      (await configError({ '.airlock/sandbox.yaml': 'upstream_ca_file: nope.pem\n' })).message,
      /cannot read upstream_ca_file/,
    );
  });
});

describe('network-allowlist.yaml', () => {
  it('validates entry shapes with positions', async () => {
    assert.match(
      (
        await configError({
          '.airlock/network-allowlist.yaml': 'url_prefixes:\n  - host: a.example\n    methods: GET\n',
        })
      ).message,
      /network-allowlist\.yaml:3:14: url_prefixes\.0\.methods: expected a list/,
    );
    assert.match(
      (await configError({ '.airlock/network-allowlist.yaml': 'url_prefixes:\n  - hots: a.example\n' })).message,
      /url_prefixes\.0\.hots: unknown key 'hots'; did you mean 'host'\?/,
    );
    assert.match(
      (await configError({ '.airlock/network-allowlist.yaml': 'url_prefixes:\n  - {host: a.example, path: api/*}\n' }))
        .message,
      /path starts with `\/`/,
    );
    assert.match(
      (await configError({ '.airlock/network-allowlist.yaml': 'domains: [bücher.de]\n' })).message,
      /punycode/,
    );
  });
  it('an empty file or null sections mean nothing is allowed', async () => {
    const p = await loadPolicy(
      { cwd: await repo({ '.airlock/network-allowlist.yaml': 'domains:\nurl_prefixes:\n' }) },
      {},
    );
    assert.deepEqual(p.allowlist, { domains: [], url_prefixes: [] });
  });
  it('the policy digest changes with the policy', async () => {
    const a = await loadPolicy(
      { cwd: await repo({ '.airlock/network-allowlist.yaml': 'domains: [a.example]\n' }) },
      {},
    );
    const b = await loadPolicy(
      { cwd: await repo({ '.airlock/network-allowlist.yaml': 'domains: [b.example]\n' }) },
      {},
    );
    assert.match(a.allowlistSha256, /^[0-9a-f]{64}$/);
    assert.notEqual(a.allowlistSha256, b.allowlistSha256);
  });
});
