"""The provider network on the host: a veth pair and a network namespace.

``PHYS_IF`` stays in the root namespace, up and without an address, as the
macvtap lower device of the physical network ``PHYSNET`` (Neutron's macvtap
agent maps it); its peer ``PEER_IF`` sits in the namespace
``PROVIDER_NETNS`` with the gateway addresses and stands in for the
provider network's router and a client.  The Neutron network on it is
made by ``cloud.provider_network``; the names and addresses of both are
here, and the driver and the integration tests rely on them (see
"Networking" in doc/source/allinone.rst).
"""

import json
import os
import subprocess
import time

from tools.aio import process
from tools.aio import state

PHYSNET = 'clearnet'
PHYS_IF = 'clearphys0'
PEER_IF = 'clearpeer0'
PROVIDER_NETNS = 'nova-clear-provider'
NETWORK = 'clear-net'
SUBNET = 'clear-subnet'
SUBNET_CIDR = '10.77.0.0/24'
GATEWAY = '10.77.0.1'
POOL = ('10.77.0.10', '10.77.0.250')
# dual stack: Neutron allocates fixed IPv6 addresses (no RA, no DHCPv6)
SUBNET6 = 'clear-subnet6'
SUBNET6_CIDR = 'fd00:77::/64'
GATEWAY6 = 'fd00:77::1'
PREFIXLEN = int(SUBNET_CIDR.split('/')[1])
PREFIXLEN6 = int(SUBNET6_CIDR.split('/')[1])


def names():
    """The provider network's names and addresses (aio.json "network")."""
    return {'physnet': PHYSNET, 'physical_interface': PHYS_IF,
            'peer_interface': PEER_IF, 'netns': PROVIDER_NETNS,
            'network': NETWORK, 'subnet': SUBNET, 'cidr': SUBNET_CIDR,
            'gateway': GATEWAY, 'allocation_pool': list(POOL),
            'subnet6': SUBNET6, 'cidr6': SUBNET6_CIDR,
            'gateway6': GATEWAY6, 'macvtap_mode': 'bridge'}


def describe():
    return '%s (%s) <-> %s in netns %s, %s' % (
        PHYS_IF, PHYSNET, PEER_IF, PROVIDER_NETNS, GATEWAY)


def _ip(*args, ns=None, check=True):
    cmd = ['ip'] + (['-n', ns] if ns else []) + list(args)
    return process.run(cmd, 'network', check=check)


def _ip_json(*args, ns=None):
    cmd = ['ip'] + (['-n', ns] if ns else []) + ['-j'] + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        return []
    try:
        return json.loads(proc.stdout or '[]')
    except ValueError:
        return []


def _netns_exists():
    return os.path.exists(os.path.join('/run/netns', PROVIDER_NETNS))


def problem():
    """Why the veth pair/namespace is not as we make it (None: it is)."""
    if not _netns_exists():
        return 'no network namespace %s' % PROVIDER_NETNS
    phys = _ip_json('-d', 'addr', 'show', 'dev', PHYS_IF)
    if not phys:
        return 'no %s' % PHYS_IF
    phys = phys[0]
    if phys.get('linkinfo', {}).get('info_kind') != 'veth':
        return '%s is not a veth' % PHYS_IF
    if 'UP' not in phys.get('flags', ()):
        return '%s is down' % PHYS_IF
    if any(a.get('family') == 'inet' for a in phys.get('addr_info', ())):
        return '%s has an IPv4 address' % PHYS_IF
    peer = _ip_json('-d', 'addr', 'show', 'dev', PEER_IF, ns=PROVIDER_NETNS)
    if not peer:
        return 'no %s in %s' % (PEER_IF, PROVIDER_NETNS)
    peer = peer[0]
    if peer.get('ifindex') != phys.get('link_index') or \
            peer.get('link_index') != phys.get('ifindex'):
        return '%s is not the peer of %s' % (PEER_IF, PHYS_IF)
    if 'UP' not in peer.get('flags', ()):
        return '%s is down' % PEER_IF
    if not any(a.get('local') == GATEWAY and a.get('prefixlen') == PREFIXLEN
               for a in peer.get('addr_info', ())):
        return '%s has not %s/%s' % (PEER_IF, GATEWAY, PREFIXLEN)
    lo = _ip_json('link', 'show', 'dev', 'lo', ns=PROVIDER_NETNS)
    if not lo or 'UP' not in lo[0].get('flags', ()):
        return 'lo is down in %s' % PROVIDER_NETNS
    return None


def up():
    """The macvtap lower device and the provider namespace (idempotent):
    reused when it has the shape above, made again when not."""
    process.say('provider network on the host: %s' % describe())
    found = problem()
    if found is None:
        created = (state.load().get('network') or {}).get('host_created',
                                                          False)
    else:
        if _ip_json('link', 'show', 'dev', PHYS_IF) or _netns_exists():
            process.say('provider network on the host: %s; making it again'
                        % found)
        if _ip_json('link', 'show', 'dev', PHYS_IF):
            _ip('link', 'del', 'dev', PHYS_IF)
        if _netns_exists():
            _ip('netns', 'del', PROVIDER_NETNS)
        _ip('netns', 'add', PROVIDER_NETNS)
        _ip('link', 'add', PHYS_IF, 'type', 'veth', 'peer', 'name', PEER_IF,
            'netns', PROVIDER_NETNS)
        # no address at all, not even an IPv6 link-local one
        _ip('link', 'set', 'dev', PHYS_IF, 'addrgenmode', 'none')
        _ip('link', 'set', 'dev', PHYS_IF, 'up')
        _ip('link', 'set', 'dev', 'lo', 'up', ns=PROVIDER_NETNS)
        _ip('addr', 'add', '%s/%s' % (GATEWAY, PREFIXLEN),
            'dev', PEER_IF, ns=PROVIDER_NETNS)
        _ip('link', 'set', 'dev', PEER_IF, 'up', ns=PROVIDER_NETNS)
        found = problem()
        if found:
            raise process.Failure('provider network on the host: %s'
                                  % found, process.log_path('network'))
        created = True
    # The IPv6 gateway, added in place (hosts set up before dual stack keep
    # their veth and the guests' macvtaps on it); no duplicate detection.
    _ip('addr', 'replace', '%s/%s' % (GATEWAY6, PREFIXLEN6),
        'dev', PEER_IF, 'nodad', ns=PROVIDER_NETNS)
    record()
    st = state.load()
    st['network']['host_created'] = created
    state.save(st)


def record(**ids):
    """The names (and the Neutron ids ``ids``) into aio.json."""
    st = state.load()
    st['network'] = dict(st.get('network') or {}, **names())
    st['network'].update(ids)
    state.save(st)


def down():
    """Remove the veth pair and namespace, if this tool made them."""
    st = state.load()
    net = st.get('network') or {}
    if not net.get('host_created'):
        return
    # macvtap devices of guests still running sit on PHYS_IF: deleting it
    # would take their network away
    links = _ip_json('-d', 'link', 'show')
    phys = [d for d in links if d.get('ifname') == PHYS_IF]
    # ip names the lower device ("link") in the same namespace
    users = [d['ifname'] for d in links
             if d.get('link') == PHYS_IF and
             d.get('linkinfo', {}).get('info_kind') in ('macvtap', 'macvlan')]
    if users:
        process.say('leaving %s and %s: guests still use it (%s)' % (
            PHYS_IF, PROVIDER_NETNS, ', '.join(users)))
        return
    if phys:
        _ip('link', 'del', 'dev', PHYS_IF)
    if _netns_exists():
        _ip('netns', 'del', PROVIDER_NETNS)
    net['host_created'] = False
    st['network'] = net
    state.save(st)
    process.say('removed %s and the namespace %s' % (PHYS_IF,
                                                     PROVIDER_NETNS))


def ping_from_provider(address, timeout=60):
    """Ping ``address`` from the provider namespace (a client on the
    network); returns (seconds until it answered, the ping's output)."""
    t0 = time.monotonic()
    cmd = ['ip', 'netns', 'exec', PROVIDER_NETNS, 'busybox', 'ping', '-c',
           '1', '-W', '1', address]
    while True:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0:
            return time.monotonic() - t0, proc.stdout
        if time.monotonic() - t0 > timeout:
            raise process.Failure('%s does not answer ping from %s: %s' % (
                address, PROVIDER_NETNS, proc.stdout + proc.stderr),
                process.log_path('nova-compute'))
        time.sleep(0.2)
