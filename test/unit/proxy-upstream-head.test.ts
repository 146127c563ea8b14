import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { framingOf, upstreamHead, type BodyFraming } from '../../src/proxy/http/upstream-head.js';

/** The one place the upstream request head is written: Host, target, port and framing come from what was judged. */

const base = {
  method: 'POST',
  authority: 'api.test',
  port: 8443,
  credentials: { headers: [] as Array<[string, string]>, target: '/x?y=1' },
  framing: { kind: 'none' } as BodyFraming,
};

void describe('upstreamHead', () => {
  test('Host comes first and is the judged authority; the sandbox’s Host never travels', () => {
    const head = upstreamHead({
      ...base,
      credentials: {
        headers: [
          ['X-A', '1'],
          ['host', 'blocked.test'],
          ['HOST', 'evil.test:22'],
        ],
        target: '/x',
      },
    });
    assert.deepEqual(head.headers, [
      ['Host', 'api.test'],
      ['X-A', '1'],
    ]);
    assert.equal(head.port, 8443);
    assert.equal(head.target, '/x');
  });

  test('framing is the one given, whatever length or encoding headers the sandbox wrote', () => {
    const sandbox: Array<[string, string]> = [
      ['Content-Length', '99'],
      ['transfer-encoding', 'chunked'],
      ['X-B', '2'],
    ];
    const framed = (framing: BodyFraming) =>
      upstreamHead({ ...base, framing, credentials: { headers: sandbox, target: '/' } }).headers;
    assert.deepEqual(framed({ kind: 'length', bytes: 5 }), [
      ['Host', 'api.test'],
      ['X-B', '2'],
      ['Content-Length', '5'],
    ]);
    assert.deepEqual(framed({ kind: 'chunked' }), [
      ['Host', 'api.test'],
      ['X-B', '2'],
      ['Transfer-Encoding', 'chunked'],
    ]);
    assert.deepEqual(framed({ kind: 'none' }), [
      ['Host', 'api.test'],
      ['X-B', '2'],
    ]);
  });

  test('every method gets explicit framing when a body exists: GET and HEAD included', () => {
    for (const method of ['GET', 'HEAD', 'DELETE', 'OPTIONS', 'POST']) {
      const head = upstreamHead({ ...base, method, framing: { kind: 'length', bytes: 3 } });
      assert.deepEqual(head.headers.at(-1), ['Content-Length', '3'], method);
    }
  });

  test('Expect travels only when asked for and a body follows; Connection and Upgrade only for a WebSocket', () => {
    const sandbox: Array<[string, string]> = [
      ['Expect', '100-continue'],
      ['Connection', 'Upgrade'],
      ['Upgrade', 'h2c'],
    ];
    const headers = (over: object) =>
      upstreamHead({ ...base, credentials: { headers: sandbox, target: '/' }, ...over }).headers.map(([n]) => n);
    assert.deepEqual(headers({}), ['Host']);
    assert.deepEqual(headers({ expectContinue: true }), ['Host']);
    assert.deepEqual(headers({ expectContinue: true, framing: { kind: 'chunked' } }), [
      'Host',
      'Transfer-Encoding',
      'Expect',
    ]);
    assert.deepEqual(
      upstreamHead({ ...base, websocket: true, credentials: { headers: sandbox, target: '/' } }).headers,
      [
        ['Host', 'api.test'],
        ['Connection', 'Upgrade'],
        ['Upgrade', 'websocket'],
      ],
    );
  });

  test('a target that is not origin-form, or a WebSocket handshake with a body, is a bug: it throws', () => {
    for (const target of ['http://evil.test/', '*', 'x', '']) {
      assert.throws(() => upstreamHead({ ...base, credentials: { headers: [], target } }), /origin-form/, target);
    }
    assert.throws(() => upstreamHead({ ...base, websocket: true, framing: { kind: 'length', bytes: 1 } }), /no body/);
  });

  test('property: exactly one Host, at most one framing header, never both Content-Length and chunked', () => {
    const name = fc.constantFrom(
      'Host',
      'host',
      'Content-Length',
      'Transfer-Encoding',
      'Connection',
      'X-Any',
      'Expect',
    );
    const framing = fc.oneof(
      fc.constant<BodyFraming>({ kind: 'none' }),
      fc.constant<BodyFraming>({ kind: 'chunked' }),
      fc.nat({ max: 1e9 }).map((bytes): BodyFraming => ({ kind: 'length', bytes })),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(name, fc.string())), framing, fc.boolean(), (headers, f, expect) => {
        const out = upstreamHead({
          ...base,
          framing: f,
          expectContinue: expect,
          credentials: { headers, target: '/' },
        });
        const count = (n: string) => out.headers.filter(([k]) => k.toLowerCase() === n).length;
        assert.equal(count('host'), 1);
        assert.equal(out.headers[0]![1], 'api.test');
        assert.equal(count('content-length') + count('transfer-encoding'), f.kind === 'none' ? 0 : 1);
        assert.equal(count('connection'), 0);
      }),
    );
  });
});

void test('framingOf: chunked over length, a length as read, no body when neither', () => {
  assert.deepEqual(framingOf({ 'transfer-encoding': 'chunked' }), { kind: 'chunked' });
  assert.deepEqual(framingOf({ 'transfer-encoding': 'gzip, chunked' }), { kind: 'chunked' });
  assert.deepEqual(framingOf({ 'content-length': '12' }), { kind: 'length', bytes: 12 });
  assert.deepEqual(framingOf({ 'content-length': '0' }), { kind: 'length', bytes: 0 });
  assert.deepEqual(framingOf({}), { kind: 'none' });
  assert.throws(() => framingOf({ 'content-length': '99999999999999999999' }));
});
