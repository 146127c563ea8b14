import { isIPv4 } from '../../protocol/policy.js';

/**
 * DNS wire handling for the sandbox's only resolver. Every A query is answered with the proxy's address, so every
 * connection the sandbox makes goes to the proxy, where the allowlist decides; every other type gets an empty
 * NOERROR answer, so a blocked host always shows up as one consistent 403 rather than sometimes as a lookup
 * failure (Airut answers NOTIMP there: airut-behaviour.md item 99). Nothing is ever looked up or forwarded.
 *
 * The response echoes the query's question bytes exactly (case included, for resolvers that randomise it), which
 * is why the answer is assembled here rather than re-encoded from a parsed name: a re-encoder would rewrite names
 * that are not valid UTF-8 or hold a `.` inside a label.
 */

export const DNS_HEADER_BYTES = 12;
/** RFC 1035 §2.3.4: a name is at most 255 octets on the wire. */
const MAX_NAME_WIRE_BYTES = 255;
const ANSWER_TTL_SECONDS = 60;

const QR = 0x8000;
const OPCODE_MASK = 0x7800;
const RD = 0x0100;
const RA = 0x0080;
const RCODE_NOTIMP = 4;
const TYPE_A = 1;
const CLASS_IN = 1;

/** Airut's names for the types its log distinguishes (item 101); the rest are logged as TYPE<n>. */
const TYPE_NAMES: ReadonlyMap<number, string> = new Map([
  [1, 'A'],
  [2, 'NS'],
  [5, 'CNAME'],
  [15, 'MX'],
  [16, 'TXT'],
  [28, 'AAAA'],
  [33, 'SRV'],
  [255, 'ANY'],
]);

export function dnsTypeName(qtype: number): string {
  return TYPE_NAMES.get(qtype) ?? `TYPE${qtype}`;
}

export interface DnsQuestion {
  id: number;
  flags: number;
  /** The first question's bytes as sent: name, QTYPE, QCLASS. */
  questionBytes: Uint8Array;
  labels: Uint8Array[];
  qtype: number;
}

/**
 * The first question of a DNS query, or null for anything that must get no reply: shorter than a header, a
 * response (answering one would let two responders loop), no question, a compressed or extended label (a query
 * has nothing earlier to point at), a name over 255 octets, or a question cut short. QCLASS is not consulted and
 * further questions are ignored, as in Airut (item 97).
 */
export function parseQuery(packet: Uint8Array): DnsQuestion | null {
  if (packet.length < DNS_HEADER_BYTES) return null;
  const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
  const flags = view.getUint16(2);
  if (flags & QR) return null;
  if (view.getUint16(4) === 0) return null;
  const labels: Uint8Array[] = [];
  let offset = DNS_HEADER_BYTES;
  for (;;) {
    if (offset >= packet.length) return null;
    const length = packet[offset]!;
    offset++;
    if (length === 0) break;
    if (length & 0xc0) return null;
    if (offset + length > packet.length) return null;
    labels.push(packet.subarray(offset, offset + length));
    offset += length;
    // +1 for the root label that must still follow.
    if (offset - DNS_HEADER_BYTES + 1 > MAX_NAME_WIRE_BYTES) return null;
  }
  if (offset + 4 > packet.length) return null;
  return {
    id: view.getUint16(0),
    flags,
    questionBytes: packet.subarray(DNS_HEADER_BYTES, offset + 4),
    labels,
    qtype: view.getUint16(offset),
  };
}

/** The name in presentation form, without the trailing dot; bytes that are not printable ASCII become `\DDD`. */
export function presentName(labels: readonly Uint8Array[]): string {
  if (labels.length === 0) return '.';
  return labels
    .map((label) => {
      let out = '';
      for (const byte of label) {
        if (byte === 0x2e || byte === 0x5c) out += '\\' + String.fromCharCode(byte);
        else if (byte > 0x20 && byte < 0x7f) out += String.fromCharCode(byte);
        else out += '\\' + byte.toString().padStart(3, '0');
      }
      return out;
    })
    .join('.');
}

export interface DnsAnswer {
  response: Uint8Array;
  type: string;
  name: string;
  /** The address given for an A query; null when the answer carries no record. */
  answer: string | null;
}

export function ipv4Bytes(address: string): Uint8Array {
  if (!isIPv4(address)) throw new TypeError(`${JSON.stringify(address)} is not an IPv4 address`);
  return Uint8Array.from(address.split('.').map(Number));
}

/**
 * The reply to one query packet, or null when it gets none. Flags: QR and RA set, RD copied (Airut always sets
 * it), opcode echoed; a non-QUERY opcode is answered NOTIMP. EDNS records are not echoed, so answers stay small.
 */
export function answerQuery(packet: Uint8Array, answerAddress: Uint8Array): DnsAnswer | null {
  const query = parseQuery(packet);
  if (query === null) return null;
  const opcode = query.flags & OPCODE_MASK;
  const isAddressAnswer = opcode === 0 && query.qtype === TYPE_A;
  const answerLength = isAddressAnswer ? 16 : 0;
  const response = new Uint8Array(DNS_HEADER_BYTES + query.questionBytes.length + answerLength);
  const view = new DataView(response.buffer);
  view.setUint16(0, query.id);
  view.setUint16(2, QR | opcode | (query.flags & RD) | RA | (opcode === 0 ? 0 : RCODE_NOTIMP));
  view.setUint16(4, 1);
  view.setUint16(6, isAddressAnswer ? 1 : 0);
  response.set(query.questionBytes, DNS_HEADER_BYTES);
  if (isAddressAnswer) {
    const at = DNS_HEADER_BYTES + query.questionBytes.length;
    view.setUint16(at, 0xc000 | DNS_HEADER_BYTES); // the name: a pointer to the question's
    view.setUint16(at + 2, TYPE_A);
    view.setUint16(at + 4, CLASS_IN);
    view.setUint32(at + 6, ANSWER_TTL_SECONDS);
    view.setUint16(at + 10, 4);
    response.set(answerAddress, at + 12);
  }
  return {
    response,
    type: dnsTypeName(query.qtype),
    name: presentName(query.labels),
    answer: isAddressAnswer ? answerAddress.join('.') : null,
  };
}
