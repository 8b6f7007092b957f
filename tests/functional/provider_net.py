"""A provider network on this machine, for tests: the product's own
(:mod:`nova_clear.deploy.provider_net`, as the all-in-one and devstack
make it) under random per-test names and a network of the tests: a veth
pair whose root end is the macvtap lower device and whose peer lives in a
network namespace with the network's gateway addresses (it stands in for
the router and for a client).  Only addresses inside that namespace and the
guests are used.  :class:`OvsNetwork` adds the root end to an Open vSwitch
bridge of the tests' own ovs-vswitchd instead (nothing the product
deploys: Neutron's OVS agent owns such bridges)."""

import os
import subprocess
import sys
import time
import uuid

import fixtures

from nova_clear.deploy import provider_net
from tests.functional import services


def _ip(*args, check=True):
    return subprocess.run(('ip',) + args, check=check, capture_output=True,
                          text=True).stdout


class ProviderNetwork(fixtures.Fixture):
    """:mod:`nova_clear.deploy.provider_net`'s pair and namespace, with
    names of this test's own and the network ``prefix``.0/24 (and
    ``prefix6``/64)."""

    def __init__(self, prefix='10.79.0', prefix6='fd00:79::'):
        super().__init__()
        self.prefix = prefix
        self.prefix6 = prefix6

    def _setUp(self):
        tag = uuid.uuid4().hex[:8]
        self.plan = provider_net.plan(
            device='ncp%s' % tag, peer='ncq%s' % tag,
            netns='nova-clear-ft-%s' % tag, cidr='%s.0/24' % self.prefix,
            cidr6='%s/64' % self.prefix6)
        self.lower = self.plan.device       # root namespace, no address
        self.netns = self.plan.netns
        self.gateway = self.plan.gateway
        self.gateway6 = self.plan.gateway6
        # first: a half-made network goes too; deleting the root end
        # deletes the peer and any macvtap on it
        self.addCleanup(provider_net.remove, self.plan, force=True)
        provider_net.ensure(self.plan)

    def address(self, n):
        return self.plan.address(n)

    def address6(self, n):
        return self.plan.address6(n)

    def run(self, *cmd, timeout=30):
        """Run ``cmd`` inside the namespace."""
        return subprocess.run(('ip', 'netns', 'exec', self.netns) + cmd,
                              capture_output=True, text=True,
                              timeout=timeout)

    def http_get(self, url, deadline=120):
        """GET ``url`` from inside the namespace until it answers (Python's
        urllib: Debian's busybox 1.35 wget crashes with -T)."""
        end = time.monotonic() + deadline
        last = None
        script = ('import sys, urllib.request; sys.stdout.write(urllib.'
                  'request.urlopen(sys.argv[1], timeout=3).read().decode())')
        while time.monotonic() < end:
            last = self.run(sys.executable, '-c', script, url)
            if last.returncode == 0:
                return last.stdout
            time.sleep(0.5)
        raise AssertionError('%s did not answer from %s within %ds: %s'
                             % (url, self.netns, deadline,
                                last and last.stderr))


def macvtaps_with(macs):
    """Host macvtap devices carrying any of ``macs``."""
    found = []
    for line in _ip('-o', 'link', 'show', 'type', 'macvtap').splitlines():
        for mac in macs:
            if mac.lower() in line.lower():
                found.append(line.split(':')[1].strip())
    return found


def allmulticast_like_the_agent(mac):
    """What Neutron's macvtap agent does to every macvtap device it sees:
    ALLMULTICAST, so that the guest receives multicast (IPv6 neighbour
    discovery) without libvirt's trustGuestRxFilters (which would let the
    guest change its MAC address)."""
    devices = macvtaps_with([mac])
    assert devices, 'no macvtap device with %s' % mac
    for dev in devices:
        _ip('link', 'set', 'dev', dev.split('@')[0], 'allmulticast', 'on')


class OvsNetwork(ProviderNetwork):
    """The same network on an Open vSwitch bridge of the tests' own
    ovs-vswitchd (userspace datapath, :func:`services.ensure_ovs`): the
    root end of the namespace's veth is a port of the bridge, the guests'
    taps are others."""

    def __init__(self, prefix='10.80.0'):
        super().__init__(prefix)

    def _setUp(self):
        services.ensure_ovs()
        self.bridge = 'ncb%s' % uuid.uuid4().hex[:8]
        services.vsctl('add-br', self.bridge, '--', 'set', 'bridge',
                       self.bridge, 'datapath_type=netdev')
        self.addCleanup(services.vsctl, '--if-exists', 'del-br', self.bridge,
                        check=False)
        super()._setUp()
        services.vsctl('add-port', self.bridge, self.lower)
        self.addCleanup(services.vsctl, '--if-exists', 'del-port',
                        self.bridge, self.lower, check=False)

    def ports(self):
        """The bridge's ports besides the namespace's veth."""
        return [p for p in services.vsctl(
            'list-ports', self.bridge).split() if p != self.lower]


def net_device_exists(name):
    return os.path.exists(os.path.join('/sys/class/net', name))
