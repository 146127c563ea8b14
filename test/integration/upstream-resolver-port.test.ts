/**
 * `upstream_dns` may name a resolver on another port than 53 (`IP:PORT`): the proxy's resolver asks exactly there —
 * a real UDP DNS server on 127.0.0.1 and an ephemeral port answers, and nothing else is asked.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import { after, before, describe, it } from 'node:test';
import { systemResolver } from '../../src/proxy/upstream/resolver.js';

describe('upstream resolver on a port other than 53', { timeout: 20_000 }, () => {
  let server: dgram.Socket;
  let port: number;
  const asked: string[] = [];

  before(async () => {
    server = dgram.createSocket('udp4');
    server.on('message', (query, from) => {
      const packet = dnsPacket.decode(query);
      const q = packet.questions![0]!;
      asked.push(`${q.type} ${q.name}`);
      const answers =
        q.type === 'A' && q.name === 'svc.test' ? [{ type: 'A' as const, name: q.name, data: '10.1.2.3' }] : [];
      server.send(
        dnsPacket.encode({ id: packet.id, type: 'response', questions: packet.questions, answers }),
        from.port,
        from.address,
      );
    });
    await new Promise<void>((resolve) => server.bind(0, '127.0.0.1', resolve));
    port = server.address().port;
  });
  after(() => server.close());

  it('resolves through 127.0.0.1:PORT', async () => {
    assert.notEqual(port, 53);
    const resolve = systemResolver([`127.0.0.1:${port}`]);
    assert.deepEqual(await resolve('svc.test'), ['10.1.2.3']);
    assert.deepEqual(asked, ['A svc.test']);
  });
});
