import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  flatten,
  hasRequestBody,
  headerValues,
  pairsFromRaw,
  setHeader,
  withoutHopByHop,
} from '../../src/proxy/http/headers.js';

/** Header handling between the hops: order, case and duplicates kept; hop-by-hop never forwarded. */

void test('raw headers become pairs and back, order, case and duplicates intact', () => {
  const raw = ['Host', 'a', 'X-A', '1', 'x-a', '2'];
  assert.deepEqual(pairsFromRaw(raw), [
    ['Host', 'a'],
    ['X-A', '1'],
    ['x-a', '2'],
  ]);
  assert.deepEqual(flatten(pairsFromRaw(raw)), raw);
  assert.deepEqual(headerValues(pairsFromRaw(raw), 'X-a'), ['1', '2']);
});

void test('hop-by-hop headers are dropped, in any case', () => {
  const pairs = pairsFromRaw([
    'CONNECTION',
    'keep-alive',
    'Keep-Alive',
    'timeout=5',
    'Proxy-Connection',
    'x',
    'proxy-authorization',
    'Basic x',
    'TE',
    'trailers',
    'Trailer',
    'X',
    'Transfer-Encoding',
    'chunked',
    'Upgrade',
    'h2c',
    'Accept',
    '*/*',
  ]);
  assert.deepEqual(withoutHopByHop(pairs), [['Accept', '*/*']]);
});

void test('headers named by Connection are dropped too, and only those', () => {
  const pairs = pairsFromRaw([
    'Connection',
    'close, X-Private ,x-other',
    'X-Private',
    '1',
    'X-OTHER',
    '2',
    'X-Keep',
    '3',
  ]);
  assert.deepEqual(withoutHopByHop(pairs), [['X-Keep', '3']]);
});

void test('a kept list lets the upgrade path retain Upgrade', () => {
  const pairs = pairsFromRaw(['Upgrade', 'websocket', 'Connection', 'Upgrade', 'Sec-WebSocket-Key', 'k']);
  assert.deepEqual(withoutHopByHop(pairs, ['upgrade']), [
    ['Upgrade', 'websocket'],
    ['Sec-WebSocket-Key', 'k'],
  ]);
});

void test('setHeader replaces every instance, or removes them', () => {
  const pairs = pairsFromRaw(['content-length', '1', 'X', 'y', 'Content-Length', '2']);
  assert.deepEqual(setHeader(pairs, 'Content-Length', '9'), [
    ['X', 'y'],
    ['Content-Length', '9'],
  ]);
  assert.deepEqual(setHeader(pairs, 'content-length', null), [['X', 'y']]);
});

void test('a body is announced by Transfer-Encoding or a non-zero Content-Length', () => {
  assert.equal(hasRequestBody({}), false);
  assert.equal(hasRequestBody({ 'content-length': '0' }), false);
  assert.equal(hasRequestBody({ 'content-length': '12' }), true);
  assert.equal(hasRequestBody({ 'transfer-encoding': 'chunked' }), true);
});
