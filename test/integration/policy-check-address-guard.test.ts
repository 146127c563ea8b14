import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { run as policy } from '../../src/cli/commands/policy.js';
import { startHttpUpstream, startProxyFixture, type FakeUpstream, type ProxyFixture } from '../helpers/upstream.js';

/**
 * `airlock policy check` predicts what the real proxy answers: an IP literal in internal address space is refused by
 * the address guard (403 upstream_address_not_allowed) even when the allowlist names it, so the check must not say
 * ALLOWED. Every case goes to both, and their codes must agree.
 */

const PUBLIC_LITERAL = '93.184.216.34';
const ALLOWLIST = {
  domains: ['127.0.0.1', '10.1.2.3', '169.254.169.254', '100.64.0.1', '::1', 'fd00:ec2::254', PUBLIC_LITERAL],
};

let fx: ProxyFixture;
let upstream: FakeUpstream;
let cwd: string;

before(async () => {
  upstream = await startHttpUpstream();
  // The public literal is mapped to a local server: the test sends nothing off this machine, and a mapping is
  // what lets a literal through in any case.
  fx = await startProxyFixture({
    allowlist: ALLOWLIST,
    upstream: {
      hosts: { [PUBLIC_LITERAL]: `127.0.0.1:${upstream.port}` },
      resolve: () => Promise.reject(new Error('no DNS')),
    },
  });
  cwd = await mkdtemp(path.join(tmpdir(), 'airlock-guard-'));
  await writeFile(path.join(cwd, 'allowlist.yaml'), JSON.stringify(ALLOWLIST));
});

after(async () => {
  await fx.close();
  await upstream.close();
});

async function check(method: string, url: string): Promise<{ code: number; json: Record<string, unknown> }> {
  const stdout = new PassThrough();
  let out = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  const ctx = { cwd, env: {}, stdout, stderr: new PassThrough(), isTTY: false };
  const code = await policy(['check', '--allowlist', 'allowlist.yaml', '--json', method, url], ctx);
  return { code, json: JSON.parse(out) as Record<string, unknown> };
}

describe('policy check and the proxy agree on IP-literal targets', { timeout: 30_000 }, () => {
  const refused = {
    '127.0.0.1': 'loopback',
    '10.1.2.3': 'private',
    '169.254.169.254': 'link-local',
    '100.64.0.1': 'carrier-grade NAT',
    '[::1]': 'loopback',
    '[fd00:ec2::254]': 'unique-local',
  };
  for (const [host, what] of Object.entries(refused)) {
    it(`${host}: refused by the address guard (${what}), though allowlisted`, async () => {
      const reply = await fx.http(host, { path: '/latest/meta-data/' });
      assert.equal(reply.status, 403);
      assert.equal(reply.headers['x-airlock-deny'], 'upstream_address_not_allowed');
      const verdict = await check('GET', `http://${host}/latest/meta-data/`);
      assert.equal(verdict.code, 1);
      assert.equal(verdict.json.allowed, false);
      assert.equal(verdict.json.code, 'upstream_address_not_allowed');
      assert.match(String(verdict.json.reason), new RegExp(`${what}.*address guard`));
    });
  }

  it('a public literal the allowlist names: allowed by both', async () => {
    const reply = await fx.http(PUBLIC_LITERAL, { path: '/x' });
    assert.equal(reply.status, 200, reply.body);
    const verdict = await check('GET', `http://${PUBLIC_LITERAL}/x`);
    assert.equal(verdict.code, 0);
    assert.equal(verdict.json.allowed, true);
  });

  it('a literal the allowlist does not name: the allowlist refuses first, in both', async () => {
    const reply = await fx.http('10.9.9.9', { path: '/' });
    assert.equal(reply.headers['x-airlock-deny'], 'host_not_allowed');
    assert.equal((await check('GET', 'http://10.9.9.9/')).json.code, 'host_not_allowed');
  });

  it('the text output names the guard, not ALLOWED', async () => {
    const stdout = new PassThrough();
    let out = '';
    stdout.on('data', (d: Buffer) => (out += d.toString()));
    const ctx = { cwd, env: {}, stdout, stderr: new PassThrough(), isTTY: false };
    assert.equal(await policy(['check', '--allowlist', 'allowlist.yaml', 'GET', 'http://169.254.169.254/'], ctx), 1);
    assert.match(out, /^BLOCKED upstream_address_not_allowed: 169\.254\.169\.254 is a link-local .*upstream_hosts/);
  });
});
