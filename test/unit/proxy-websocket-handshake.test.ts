import assert from 'node:assert/strict';
import { test } from 'node:test';
import { acceptProblem, handshakeProblem, websocketAccept } from '../../src/proxy/http/websocket.js';

/** What counts as a WebSocket handshake the proxy forwards, and as an upstream accept it pipes bytes after. */

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const handshake: Array<[string, string]> = [
  ['Connection', 'Upgrade'],
  ['Upgrade', 'websocket'],
  ['Sec-WebSocket-Version', '13'],
  ['Sec-WebSocket-Key', KEY],
];

void test('the accept is RFC 6455’s: base64(sha1(key + GUID)) — the RFC’s own example', () => {
  assert.equal(websocketAccept(KEY), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
});

void test('a well-formed handshake passes; anything else is refused with the right status and code', () => {
  assert.equal(handshakeProblem('GET', handshake, false), null);
  const without = (name: string) => handshake.filter(([n]) => n !== name);
  const cases: Array<[string, ReturnType<typeof handshakeProblem>]> = [
    ['h2c', handshakeProblem('GET', [...without('Upgrade'), ['Upgrade', 'h2c']], false)],
    ['two protocols', handshakeProblem('GET', [...without('Upgrade'), ['Upgrade', 'websocket, h2c']], false)],
    ['POST', handshakeProblem('POST', handshake, false)],
    ['no key', handshakeProblem('GET', without('Sec-WebSocket-Key'), false)],
    ['two keys', handshakeProblem('GET', [...handshake, ['Sec-WebSocket-Key', KEY]], false)],
    ['short key', handshakeProblem('GET', [...without('Sec-WebSocket-Key'), ['Sec-WebSocket-Key', 'c2hvcnQ=']], false)],
    [
      'version 8',
      handshakeProblem('GET', [...without('Sec-WebSocket-Version'), ['Sec-WebSocket-Version', '8']], false),
    ],
    ['a body', handshakeProblem('GET', handshake, true)],
  ];
  const shown = Object.fromEntries(cases.map(([what, p]) => [what, p && `${p.status} ${p.code}`]));
  assert.deepEqual(shown, {
    h2c: '403 upgrade_not_allowed',
    'two protocols': '403 upgrade_not_allowed',
    POST: '403 method_not_allowed',
    'no key': '400 upgrade_not_allowed',
    'two keys': '400 upgrade_not_allowed',
    'short key': '400 upgrade_not_allowed',
    'version 8': '400 upgrade_not_allowed',
    'a body': '400 upgrade_not_allowed',
  });
  assert.equal(handshakeProblem('GET', [...without('Upgrade'), ['upgrade', 'WebSocket']], false), null, 'any case');
});

void test('only a 101 that switches to websocket with the accept for the key sent lets bytes through', () => {
  const accept = websocketAccept(KEY);
  const good: Array<[string, string]> = [
    ['Upgrade', 'websocket'],
    ['Connection', 'Upgrade'],
    ['Sec-WebSocket-Accept', accept],
  ];
  assert.equal(acceptProblem(KEY, 101, good), null);
  const without = (name: string) => good.filter(([n]) => n !== name);
  assert.match(acceptProblem(KEY, 101, without('Sec-WebSocket-Accept')) ?? '', /Sec-WebSocket-Accept/);
  assert.match(
    acceptProblem(KEY, 101, [...without('Sec-WebSocket-Accept'), ['Sec-WebSocket-Accept', websocketAccept('x')]]) ?? '',
    /Sec-WebSocket-Accept/,
  );
  assert.match(acceptProblem(KEY, 101, [...good, ['Sec-WebSocket-Accept', accept]]) ?? '', /Sec-WebSocket-Accept/);
  assert.match(acceptProblem(KEY, 101, [...without('Upgrade'), ['Upgrade', 'h2c']]) ?? '', /other than websocket/);
  assert.match(acceptProblem(KEY, 101, without('Connection')) ?? '', /Connection: upgrade/);
  assert.match(acceptProblem(KEY, 200, good) ?? '', /answered 200/);
});
