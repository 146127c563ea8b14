import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { airlockRules, bridgeRule, forwardChainDrops } from '../../src/cli/session/bridge-forwarding.js';

/**
 * Rootful Podman on a host where Docker set FORWARD to DROP: airlock adds one ACCEPT rule per run for traffic
 * inside the sandbox bridge. These are the pure decisions: when a rule is needed, its exact shape, and which
 * rules the orphan sweep may take back. (Real iptables and Podman: test/container/network-sandbox.test.ts.)
 */

// What `iptables -S FORWARD` printed on this machine with dockerd and Podman running.
const DOCKER_HOST = `-P FORWARD DROP
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -m comment --comment "netavark firewall plugin rules" -j NETAVARK_FORWARD
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
`;

describe('bridge forwarding rule', () => {
  it('is needed when the FORWARD chain drops by policy or by a catch-all rule, not when it accepts', () => {
    assert.equal(forwardChainDrops(DOCKER_HOST), true);
    assert.equal(forwardChainDrops('-P FORWARD ACCEPT\n-A FORWARD -j DOCKER-USER\n'), false);
    assert.equal(forwardChainDrops('-P FORWARD ACCEPT\n-A FORWARD -j REJECT\n'), true);
    assert.equal(forwardChainDrops('-P FORWARD ACCEPT\n-A FORWARD -j DROP\n'), true);
    // A DROP that only matches some traffic is not a catch-all.
    assert.equal(forwardChainDrops('-P FORWARD ACCEPT\n-A FORWARD -i eth9 -j DROP\n'), false);
    assert.equal(forwardChainDrops(''), false);
  });

  it('accepts only traffic that enters and leaves the same bridge, tagged with the network name', () => {
    assert.deepEqual(bridgeRule('podman3', 'airlock-sandbox-net-abc'), [
      'FORWARD',
      '-i',
      'podman3',
      '-o',
      'podman3',
      '-m',
      'comment',
      '--comment',
      'airlock:airlock-sandbox-net-abc',
      '-j',
      'ACCEPT',
    ]);
  });

  it('the sweep finds exactly the rules airlock wrote, as iptables lists them', () => {
    const listing =
      DOCKER_HOST +
      '-A FORWARD -i podman3 -o podman3 -m comment --comment airlock:airlock-sandbox-net-abc -j ACCEPT\n' +
      '-A FORWARD -i podman4 -o podman4 -m comment --comment "airlock:airlock-sandbox-net-def" -j ACCEPT\n' +
      // Borrowed prefix, different shape: someone else's rule, left alone.
      '-A FORWARD -i podman5 -o eth0 -m comment --comment airlock:other -j ACCEPT\n' +
      '-A FORWARD -m comment --comment airlock: -i podman6 -o podman6 -j ACCEPT\n';
    assert.deepEqual(airlockRules(listing), [
      { network: 'airlock-sandbox-net-abc', rule: bridgeRule('podman3', 'airlock-sandbox-net-abc') },
      { network: 'airlock-sandbox-net-def', rule: bridgeRule('podman4', 'airlock-sandbox-net-def') },
    ]);
  });
});
