import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bridgesApartFromHost, HOST_ALIAS, hostsFileAddress } from '../../src/cli/session/host-gateway.js';

// /etc/hosts of a container on a rootless Podman 5.4 bridge network (pasta), as Podman wrote it (Podman 5 lane).
const PODMAN5_ROOTLESS_HOSTS = `127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
169.254.1.2\thost.containers.internal host.docker.internal
10.89.0.2\t5aea8db86920 sleepy_sammet
`;

describe('host-gateway under rootless Podman', { timeout: 10_000 }, () => {
  it("takes the host's address from Podman's host.containers.internal (pasta maps it, not the bridge gateway)", () => {
    assert.equal(hostsFileAddress(PODMAN5_ROOTLESS_HOSTS, HOST_ALIAS), '169.254.1.2');
  });

  it('finds nothing where Podman wrote no entry, or only a comment or a malformed line names it', () => {
    assert.equal(hostsFileAddress('127.0.0.1 localhost\n', HOST_ALIAS), null);
    assert.equal(hostsFileAddress(`# 10.0.0.1 ${HOST_ALIAS}\n`, HOST_ALIAS), null);
    assert.equal(hostsFileAddress(`not-an-ip ${HOST_ALIAS}\n`, HOST_ALIAS), null);
    assert.equal(hostsFileAddress(`10.0.0.1 ${HOST_ALIAS}.example\n`, HOST_ALIAS), null);
  });

  it('applies to rootless Podman only: rootful Podman and Docker bridges hold a host address', () => {
    const podman = { kind: 'podman', binary: '/usr/bin/podman' } as const;
    const docker = { kind: 'docker', binary: '/usr/bin/docker' } as const;
    assert.equal(bridgesApartFromHost(podman, 1001), true);
    assert.equal(bridgesApartFromHost(podman, 0), false);
    assert.equal(bridgesApartFromHost(docker, 1001), false);
  });
});
