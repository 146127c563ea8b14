import assert from 'node:assert/strict';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { EVENT_LINE_PREFIX as EVENT_PREFIX } from '../../src/protocol/proxy-wire.js';
import { openProcessLog } from '../../src/proxy/log/file-sinks.js';
import type { NetworkEvent } from '../../src/proxy/log/network-log.js';

/**
 * The proxy's event lines for the host are written in batches (one pipe write, one wake-up of the reader chain,
 * per batch): nothing is lost, order is kept, a line after a quiet spell leaves at the end of the current turn,
 * and `flush` / `close` write what is held at once.
 */

const dns = (name: string): NetworkEvent => ({
  event: 'dns',
  ts: new Date('2026-01-02T03:04:05.678Z'),
  transport: 'udp',
  type: 'A',
  name,
  answer: '10.0.0.1',
});

function recorder() {
  const writes: string[] = [];
  const names = () =>
    writes
      .join('')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => {
        assert.ok(l.startsWith(EVENT_PREFIX), l);
        return (JSON.parse(l.slice(EVENT_PREFIX.length).split('\t')[0]!) as { name: string }).name;
      });
  return { writes, names, sink: { write: (chunk: string) => void writes.push(chunk) } };
}

void test('lines of one turn leave in one write, in order, at the end of the turn', { timeout: 5000 }, async () => {
  const out = recorder();
  const log = openProcessLog({ stdout: true }, out.sink);
  log.write(dns('a.test'));
  log.write(dns('b.test'));
  log.write(dns('c.test'));
  assert.equal(out.writes.length, 0, 'held until the turn ends');
  await nextTurn();
  assert.equal(out.writes.length, 1);
  assert.deepEqual(out.names(), ['a.test', 'b.test', 'c.test']);
  await log.close();
});

void test('while lines keep coming, writes are spaced; nothing is lost or reordered', { timeout: 5000 }, async () => {
  const out = recorder();
  const log = openProcessLog({ stdout: true }, out.sink);
  log.write(dns('first.test'));
  await nextTurn();
  assert.equal(out.writes.length, 1);
  // Right after a write: the next lines wait for the interval instead of costing a write each.
  for (let i = 0; i < 5; i++) {
    log.write(dns(`n${i}.test`));
    await nextTurn();
  }
  assert.equal(out.writes.length, 1, 'held within the interval');
  await sleep(50);
  assert.equal(out.writes.length, 2, 'written together once the interval passed');
  assert.deepEqual(out.names(), ['first.test', 'n0.test', 'n1.test', 'n2.test', 'n3.test', 'n4.test']);
  await log.close();
});

void test('flush and close write what is held at once', { timeout: 5000 }, async () => {
  const out = recorder();
  const log = openProcessLog({ stdout: true }, out.sink);
  log.write(dns('a.test'));
  log.flush();
  assert.deepEqual(out.names(), ['a.test']);
  log.write(dns('b.test'));
  await log.close();
  assert.deepEqual(out.names(), ['a.test', 'b.test']);
  // Nothing scheduled fires after close with a second copy.
  await sleep(30);
  assert.equal(out.writes.length, 2);
});

void test('a large burst is written before the turn ends, bounded in size', { timeout: 5000 }, async () => {
  const out = recorder();
  const log = openProcessLog({ stdout: true }, out.sink);
  for (let i = 0; i < 1000; i++) log.write(dns(`host-${i}.test`));
  assert.ok(out.writes.length >= 1, 'the batch limit forces writes within the turn');
  for (const chunk of out.writes) assert.ok(chunk.length < 80 * 1024, `a write of ${chunk.length} bytes`);
  await log.close();
  assert.deepEqual(
    out.names(),
    Array.from({ length: 1000 }, (_, i) => `host-${i}.test`),
  );
});
