import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { forbiddenAddressReason } from '../../src/proxy/upstream/address-guard.js';
import { parseHostsEntry } from '../../src/protocol/sandbox-config.js';
import { createUpstreamRouter } from '../../src/proxy/upstream/route.js';

/** The SSRF / DNS-rebinding guard and the upstream routing that applies it. */

void describe('forbidden addresses', () => {
  const forbidden = [
    '0.0.0.0',
    '0.1.2.3',
    '10.0.0.1',
    '10.255.255.255',
    '100.64.0.1',
    '100.127.255.255',
    '127.0.0.1',
    '127.8.9.10',
    '169.254.169.254',
    '169.254.0.1',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.0.1',
    '192.0.0.170',
    '198.18.0.1',
    '224.0.0.1',
    '239.255.255.250',
    '255.255.255.255',
    '240.0.0.1',
    '::',
    '::1',
    'fe80::1',
    'febf::1',
    'fc00::1',
    'fd00:ec2::254',
    'ff02::1',
    '::ffff:127.0.0.1',
    '::ffff:10.0.0.1',
    '::ffff:7f00:1',
    '64:ff9b::a9fe:a9fe',
    '64:ff9b::169.254.169.254',
    '::127.0.0.1',
    'FE80::ABCD%eth0',
  ];
  for (const ip of forbidden) {
    void test(`${ip} is refused`, () => assert.notEqual(forbiddenAddressReason(ip), null));
  }
  const allowed = [
    '1.1.1.1',
    '8.8.8.8',
    '93.184.216.34',
    '100.63.255.255',
    '100.128.0.0',
    '172.15.255.255',
    '172.32.0.0',
    '192.167.255.255',
    '169.253.255.255',
    '2606:4700::1111',
    '2001:db8::1',
    '::ffff:8.8.8.8',
    '64:ff9b::808:808',
  ];
  for (const ip of allowed) {
    void test(`${ip} is a public address`, () => assert.equal(forbiddenAddressReason(ip), null));
  }
  void test('a non-address is refused', () => assert.notEqual(forbiddenAddressReason('example.com'), null));

  void test('property: every 10/8, 127/8 and 192.168/16 address, and its IPv4-mapped form, is refused', () => {
    const octet = fc.integer({ min: 0, max: 255 });
    fc.assert(
      fc.property(fc.constantFrom('10', '127', '192.168'), octet, octet, octet, (prefix, a, b, c) => {
        const ip = prefix === '192.168' ? `192.168.${b}.${c}` : `${prefix}.${a}.${b}.${c}`;
        assert.notEqual(forbiddenAddressReason(ip), null);
        assert.notEqual(forbiddenAddressReason(`::ffff:${ip}`), null);
      }),
    );
  });
});

void describe('routing', () => {
  void test('upstream hosts entries: IP, IP:PORT, [v6]:PORT', () => {
    assert.deepEqual(parseHostsEntry('10.0.0.5'), { address: '10.0.0.5' });
    assert.deepEqual(parseHostsEntry('10.0.0.5:8443'), { address: '10.0.0.5', port: 8443 });
    assert.deepEqual(parseHostsEntry('[fd00::1]:443'), { address: 'fd00::1', port: 443 });
    assert.deepEqual(parseHostsEntry('fd00::1'), { address: 'fd00::1' });
    assert.equal(parseHostsEntry('host.test'), null);
    assert.equal(parseHostsEntry('10.0.0.5:0'), null);
  });

  void test('a mapped name bypasses DNS and the guard; its port overrides the request’s', async () => {
    const asked: string[] = [];
    const route = createUpstreamRouter({
      hosts: { 'Internal.Test': '10.0.0.5:8443', 'plain.test': '10.0.0.6' },
      resolve: (n) => (asked.push(n), Promise.resolve(['1.1.1.1'])),
    });
    assert.deepEqual(await route('internal.test', 443), {
      kind: 'connect',
      address: '10.0.0.5',
      port: 8443,
      mapped: true,
    });
    assert.deepEqual(await route('plain.test', 80), { kind: 'connect', address: '10.0.0.6', port: 80, mapped: true });
    assert.deepEqual(asked, []);
  });

  void test('without a port in the mapping the upstream port is the one given (the listener’s); a key may name a port', async () => {
    const route = createUpstreamRouter({
      hosts: { 'svc.test': '10.0.0.7', 'svc.test:5000': '10.0.0.8:6000', 'Other.Test.:9000': '10.0.0.9' },
      resolve: () => Promise.reject(new Error('no DNS')),
    });
    const where = async (host: string, port: number) => {
      const r = await route(host, port);
      return r.kind === 'connect' ? `${r.address}:${r.port}` : r.kind;
    };
    assert.equal(await where('svc.test', 443), '10.0.0.7:443');
    assert.equal(await where('svc.test', 8080), '10.0.0.7:8080');
    assert.equal(await where('svc.test', 5000), '10.0.0.8:6000');
    assert.equal(await where('other.test', 9000), '10.0.0.9:9000');
    assert.equal(await where('other.test', 443), 'failed', 'the keyed mapping is for its port only');
    assert.throws(() =>
      createUpstreamRouter({ hosts: { 'bad name': '10.0.0.1' }, resolve: () => Promise.resolve([]) }),
    );
  });

  void test('one internal answer among public ones taints the name', async () => {
    const route = createUpstreamRouter({ resolve: () => Promise.resolve(['1.1.1.1', '127.0.0.1']) });
    assert.equal((await route('mixed.test', 443)).kind, 'forbidden');
  });

  void test('a name that resolves to an address of the machine running airlock is refused, public or not', async () => {
    const own = ['1.2.3.4', '2001:4860::7'];
    const route = createUpstreamRouter({
      resolve: (n) =>
        Promise.resolve([n === 'v6.test' ? '2001:4860::7' : n === 'mapped.test' ? '::ffff:1.2.3.4' : '1.2.3.4']),
      hostAddresses: own,
    });
    for (const name of ['evil.test', 'v6.test', 'mapped.test']) {
      const r = await route(name, 22);
      assert.equal(r.kind, 'forbidden', name);
      assert.match(r.kind === 'forbidden' ? r.reason : '', /machine running airlock/);
    }
    const other = createUpstreamRouter({ resolve: () => Promise.resolve(['1.2.3.5']), hostAddresses: own });
    assert.equal((await other('fine.test', 443)).kind, 'connect', 'a neighbouring public address is fine');
    const mappedByConfig = createUpstreamRouter({
      hosts: { 'ci.test': '1.2.3.4:8080' },
      resolve: () => Promise.resolve([]),
      hostAddresses: own,
    });
    assert.equal((await mappedByConfig('ci.test', 443)).kind, 'connect', 'upstream_hosts is an explicit decision');
  });

  void test('resolution failures and empty answers are failures (502), not refusals', async () => {
    const failing = createUpstreamRouter({
      resolve: () => Promise.reject(Object.assign(new Error(), { code: 'ENOTFOUND' })),
    });
    assert.deepEqual(await failing('x.test', 443), { kind: 'failed', reason: 'cannot resolve x.test: ENOTFOUND' });
    const empty = createUpstreamRouter({ resolve: () => Promise.resolve([]) });
    assert.equal((await empty('x.test', 443)).kind, 'failed');
  });

  void test('the vetted address is the one returned, and answers are cached for the TTL only', async () => {
    let t = 0;
    let calls = 0;
    const answers = [['1.1.1.1'], ['127.0.0.1']];
    const route = createUpstreamRouter({
      resolve: () => Promise.resolve(answers[Math.min(calls++, 1)]!),
      cacheTtlMs: 1000,
      now: () => t,
    });
    assert.deepEqual(await route('rebind.test', 443), {
      kind: 'connect',
      address: '1.1.1.1',
      port: 443,
      mapped: false,
    });
    t = 500;
    assert.equal((await route('rebind.test', 443)).kind, 'connect');
    assert.equal(calls, 1);
    t = 1500;
    // The rebinding answer arrives on the next lookup and is refused like any other.
    assert.equal((await route('rebind.test', 443)).kind, 'forbidden');
  });

  void test('IP-literal hosts are judged as addresses without DNS', async () => {
    const route = createUpstreamRouter({ resolve: () => Promise.reject(new Error('no dns')) });
    assert.equal((await route('127.0.0.1', 80)).kind, 'forbidden');
    assert.deepEqual(await route('8.8.8.8', 80), { kind: 'connect', address: '8.8.8.8', port: 80, mapped: false });
  });
});
