import assert from 'node:assert/strict';
import { test } from 'node:test';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { answerQuery, ipv4Bytes, parseQuery, presentName } from '../../src/proxy/dns/packet.js';

const PROXY = ipv4Bytes('10.199.1.100');
const hex = (b: Uint8Array | null | undefined) => (b ? Buffer.from(b).toString('hex') : null);
const bytes = (h: string) => Uint8Array.from(Buffer.from(h, 'hex'));
const respond = (h: string) => answerQuery(bytes(h), PROXY);

// example.com, as Airut's vectors write it (airut-behaviour.md item 100).
const EXAMPLE_COM = '076578616d706c6503636f6d00';

void test("an A query gets Airut's exact answer: the proxy address, TTL 60, a pointer to the question", () => {
  const r = respond(`123401000001000000000000${EXAMPLE_COM}00010001`);
  assert.equal(hex(r?.response), `123481800001000100000000${EXAMPLE_COM}00010001c00c000100010000003c00040ac70164`);
  assert.deepEqual(
    { type: r?.type, name: r?.name, answer: r?.answer },
    {
      type: 'A',
      name: 'example.com',
      answer: '10.199.1.100',
    },
  );
});

void test('AAAA gets NOERROR with no records where Airut answers NOTIMP (8184)', () => {
  const r = respond(`123401000001000000000000${EXAMPLE_COM}001c0001`);
  assert.equal(hex(r?.response), `123481800001000000000000${EXAMPLE_COM}001c0001`);
  assert.deepEqual({ type: r?.type, answer: r?.answer }, { type: 'AAAA', answer: null });
});

void test('every other type gets NOERROR with no records, named as Airut names it', () => {
  for (const [qtype, name] of [
    ['0010', 'TXT'],
    ['00ff', 'ANY'],
    ['0041', 'TYPE65'],
    ['000f', 'MX'],
    ['0021', 'SRV'],
    ['0005', 'CNAME'],
    ['0002', 'NS'],
    ['000c', 'TYPE12'],
    ['ffff', 'TYPE65535'],
  ] as const) {
    const r = respond(`beef01000001000000000000${EXAMPLE_COM}${qtype}0001`);
    assert.equal(hex(r?.response), `beef81800001000000000000${EXAMPLE_COM}${qtype}0001`, name);
    assert.equal(r?.type, name);
    assert.equal(r?.answer, null);
  }
});

void test('RD is copied from the query; RA is always set', () => {
  assert.equal(hex(respond(`abcd00000001000000000000${EXAMPLE_COM}00010001`)?.response)?.slice(4, 8), '8080');
  assert.equal(hex(respond(`abcd01000001000000000000${EXAMPLE_COM}00010001`)?.response)?.slice(4, 8), '8180');
});

void test('the question is echoed byte for byte, case and QCLASS included', () => {
  const question = '074578416d506c4503434f4d0000010003'; // ExAmPlE.COM, class CH
  const r = respond(`000101000001000000000000${question}`);
  assert.equal(hex(r?.response), `000181800001000100000000${question}c00c000100010000003c00040ac70164`);
  assert.equal(r?.name, 'ExAmPlE.COM');
});

void test('only the first question is answered, and EDNS is not echoed', () => {
  const second = '0474657374000001' + '0001';
  const multi = respond(`777701000002000000000000${EXAMPLE_COM}00010001${second}`);
  assert.equal(hex(multi?.response), `777781800001000100000000${EXAMPLE_COM}00010001c00c000100010000003c00040ac70164`);
  const opt = '0000290200000000000000'; // root, OPT, 512-byte payload, no options
  const edns = respond(`777701000001000000000001${EXAMPLE_COM}00010001${opt}`);
  assert.equal(hex(edns?.response), hex(multi?.response));
});

void test('a non-QUERY opcode is answered NOTIMP with the opcode echoed', () => {
  const r = respond(`424228000001000000000000${EXAMPLE_COM}00010001`); // opcode 5 (UPDATE)
  assert.equal(hex(r?.response), `4242a8840001000000000000${EXAMPLE_COM}00010001`);
  assert.equal(r?.answer, null);
});

void test('packets that must get no reply get none', () => {
  const cases: Record<string, string> = {
    empty: '',
    'shorter than a header': '12340100000100000000',
    'header only': '123401000001000000000000',
    'a response (QR set)': `123481800001000000000000${EXAMPLE_COM}00010001`,
    'no question (QDCOUNT 0)': `123401000000000000000000${EXAMPLE_COM}00010001`,
    'compression pointer in the question': '123401000001000000000000c00c00010001',
    'pointer after a label': '12340100000100000000000003777777c00c00010001',
    'extended label type 0x40': '1234010000010000000000004161626300010001',
    'label longer than the packet': '12340100000100000000000009616263',
    'name without its terminator': '123401000001000000000000036162630161',
    'no QTYPE/QCLASS': `123401000001000000000000${EXAMPLE_COM}`,
    'QCLASS cut short': `123401000001000000000000${EXAMPLE_COM}000100`,
  };
  for (const [what, packet] of Object.entries(cases)) assert.equal(respond(packet), null, what);
});

void test('a name is at most 255 octets on the wire', () => {
  const label = (n: number) => '3f' + '61'.repeat(63).slice(0, n * 2);
  // Four 63-octet labels plus lengths is 256 octets with the root: one too many.
  const tooLong = label(63).repeat(4) + '00';
  assert.equal(respond(`123401000001000000000000${tooLong}00010001`), null);
  // Three 63-octet labels and one of 61 is exactly 255.
  const longest = label(63).repeat(3) + '3d' + '61'.repeat(61) + '00';
  assert.equal(longest.length / 2, 255);
  assert.equal(respond(`123401000001000000000000${longest}00010001`)?.answer, '10.199.1.100');
});

void test('names are shown without the trailing dot, with unprintable and special bytes escaped', () => {
  assert.equal(presentName([]), '.');
  const labels = [Uint8Array.from([0x61, 0x2e, 0x62]), Uint8Array.from([0x5c, 0x20, 0x00, 0xff, 0x7f, 0x0a])];
  assert.equal(presentName(labels), 'a\\.b.\\\\\\032\\000\\255\\127\\010');
  assert.equal(respond(`1234010000010000000000000000010001`)?.name, '.');
});

void test('an answer is decoded by an independent DNS implementation as a proper A record', () => {
  const query = dnsPacket.encode({
    type: 'query',
    id: 4242,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: 'A', name: 'api.github.com' }],
  });
  const decoded = dnsPacket.decode(Buffer.from(answerQuery(query, PROXY)!.response));
  assert.equal(decoded.id, 4242);
  assert.equal(decoded.type, 'response');
  assert.equal((decoded.flags ?? -1) & 0x000f, 0, 'NOERROR');
  assert.equal(decoded.flag_rd, true);
  assert.equal(decoded.flag_ra, true);
  assert.deepEqual(decoded.questions, [{ type: 'A', name: 'api.github.com', class: 'IN' }]);
  assert.equal(decoded.answers?.length, 1);
  const [a] = decoded.answers;
  assert.deepEqual(
    { ...a, flush: undefined },
    {
      type: 'A',
      name: 'api.github.com',
      class: 'IN',
      ttl: 60,
      data: '10.199.1.100',
      flush: undefined,
    },
  );
});

const dnsLabel = fc.stringMatching(/^[a-zA-Z0-9][a-zA-Z0-9-]{0,20}$/);
/** dns-packet's type name → the name the responder reports (Airut's set; others as TYPE<n>). */
const qtypes = {
  A: 'A',
  AAAA: 'AAAA',
  TXT: 'TXT',
  MX: 'MX',
  NS: 'NS',
  CNAME: 'CNAME',
  SRV: 'SRV',
  ANY: 'ANY',
  CAA: 'TYPE257',
  PTR: 'TYPE12',
  SOA: 'TYPE6',
} as const;

void test('for any well-formed query the answer matches it: same id and question, an A record only for A', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 0xffff }),
      fc.array(dnsLabel, { minLength: 1, maxLength: 6 }),
      fc.constantFrom(...(Object.keys(qtypes) as (keyof typeof qtypes)[])),
      fc.boolean(),
      (id, labels, type, rd) => {
        const name = labels.join('.');
        const query = dnsPacket.encode({
          type: 'query',
          id,
          flags: rd ? dnsPacket.RECURSION_DESIRED : 0,
          questions: [{ type: type as dnsPacket.RecordType, name }],
        });
        const r = answerQuery(query, PROXY);
        assert.ok(r);
        const decoded = dnsPacket.decode(Buffer.from(r.response));
        assert.equal(decoded.id, id);
        assert.equal((decoded.flags ?? -1) & 0x000f, 0, 'NOERROR');
        assert.equal(decoded.flag_rd, rd);
        assert.deepEqual(decoded.questions, [{ type, name, class: 'IN' }]);
        assert.equal(r.name, name);
        assert.equal(r.type, qtypes[type]);
        const answered: unknown[] = (decoded.answers ?? []).map((x) => ('data' in x ? x.data : undefined));
        if (type === 'A') assert.deepEqual(answered, ['10.199.1.100']);
        else assert.equal(decoded.answers?.length ?? 0, 0);
      },
    ),
    { numRuns: 500 },
  );
});

void test('arbitrary bytes never throw, and any reply is a response to the same id', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (packet) => {
      const r = answerQuery(packet, PROXY);
      if (r === null) return;
      assert.equal(r.response[0], packet[0]);
      assert.equal(r.response[1], packet[1]);
      assert.ok(r.response[2]! & 0x80, 'QR set');
      assert.equal(parseQuery(r.response), null, 'a reply is never itself answerable, so two responders cannot loop');
    }),
    { numRuns: 5000 },
  );
});
