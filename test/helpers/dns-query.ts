import type dnsPacket from 'dns-packet';

/** An EDNS(0) OPT pseudo-record advertising a 4096-byte UDP payload, as resolvers add to their queries. */
export const EDNS_OPT: dnsPacket.OptAnswer = {
  type: 'OPT',
  name: '.',
  udpPayloadSize: 4096,
  extendedRcode: 0,
  ednsVersion: 0,
  flags: 0,
  flag_do: false,
  options: [],
};
