"""The provider network on one host, as a veth pair and a namespace.

The root end of the pair (``clearphys0``, up, no address at all) is the
macvtap agent's physical interface for the physical network ``clearnet``;
its peer (``clearpeer0``) sits in the network namespace
``nova-clear-provider`` with the gateway addresses (10.77.0.1/24 and
fd00:77::1/64, the latter without duplicate address detection) and stands
in for the provider network's router and for a client::

    root namespace                     netns nova-clear-provider
    macvtap0..N (guests, bridge mode)
        |
    clearphys0  (veth, up, no address) <====> clearpeer0  10.77.0.1/24
    = physnet "clearnet"                      fd00:77::1/64 nodad, lo up
        |
    clearhost0  (macvlan, bridge mode, 10.77.0.2/24; optional)

The host itself cannot reach the guests through ``clearphys0`` (a macvtap's
lower device never hears its children); ``clearhost0`` is a sibling of the
guests' macvtaps, so the host (tempest logging in to its servers) reaches
them on the link, with an address outside Neutron's allocation pool
(:func:`ensure_host_access`, ``nova-clear-provider-net up --host-access``).

The one implementation used by ``tools/allinone``, the devstack plugin
(through ``nova-clear-provider-net up|down|show``) and the functional
tests' fixture (with names and networks of its own).  :func:`plan`
computes names and addresses without touching the host; :func:`ensure`
and :func:`remove` run ``ip`` and are idempotent.
"""

import argparse
import dataclasses
import ipaddress
import json
import os
import subprocess
import sys

# The defaults: the driver's documentation, the integration tests and the
# devstack settings (checked by a unit test) use the same.
PHYSNET = 'clearnet'
DEVICE = 'clearphys0'
PEER = 'clearpeer0'
HOST_DEVICE = 'clearhost0'
# the host's address on the network (host access): below the pool
HOST_INDEX = 2
NETNS = 'nova-clear-provider'
CIDR = '10.77.0.0/24'
CIDR6 = 'fd00:77::/64'
# the Neutron objects on it (flat, shared, DHCP off)
NETWORK = 'clear-net'
SUBNET = 'clear-subnet'
SUBNET6 = 'clear-subnet6'
# the allocation pool: host addresses POOL_START .. (last - POOL_END_GAP)
POOL_START = 10
POOL_END_GAP = 5
NETNS_DIR = '/run/netns'
IFNAMSIZ = 16


class ProviderNetError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Plan:
    """Names and addresses of one provider network on a host."""
    device: str               # root namespace: the macvtap lower device
    peer: str                 # its veth peer, in ``netns``
    netns: str
    cidr: str
    gateway: str              # on ``peer``
    cidr6: str | None         # None: IPv4 only
    gateway6: str | None
    pool: tuple               # (first, last) of Neutron's allocation pool
    physnet: str = PHYSNET
    network: str = NETWORK
    subnet: str = SUBNET
    subnet6: str = SUBNET6
    host_device: str = HOST_DEVICE

    @property
    def host_address(self):
        """The host's address on the network (:func:`ensure_host_access`)."""
        return self.address(HOST_INDEX)

    @property
    def prefixlen(self):
        return ipaddress.ip_network(self.cidr).prefixlen

    @property
    def prefixlen6(self):
        return ipaddress.ip_network(self.cidr6).prefixlen if self.cidr6 \
            else None

    def address(self, n):
        """The ``n``-th address of the IPv4 network."""
        return str(ipaddress.ip_network(self.cidr)[n])

    def address6(self, n):
        return str(ipaddress.ip_network(self.cidr6)[n])

    def describe(self):
        return '%s (%s) <-> %s in netns %s, %s' % (
            self.device, self.physnet, self.peer, self.netns, self.gateway)

    def as_dict(self):
        """As ``tools/allinone`` records it (``aio.json``: ``network``)."""
        return {'physnet': self.physnet, 'physical_interface': self.device,
                'peer_interface': self.peer, 'netns': self.netns,
                'network': self.network, 'subnet': self.subnet,
                'cidr': self.cidr, 'gateway': self.gateway,
                'allocation_pool': list(self.pool),
                'subnet6': self.subnet6, 'cidr6': self.cidr6,
                'gateway6': self.gateway6,
                'host_interface': self.host_device,
                'host_address': self.host_address}


def _check_name(kind, name, limit):
    if not name or len(name) > limit or '/' in name or \
            any(c.isspace() for c in name) or name in ('.', '..'):
        raise ProviderNetError('bad %s name %r (at most %d characters, no '
                               '"/" or white space)' % (kind, name, limit))


def _network(cidr, version):
    try:
        net = ipaddress.ip_network(cidr)
    except ValueError as e:
        raise ProviderNetError('bad network %r: %s' % (cidr, e))
    if net.version != version:
        raise ProviderNetError('%s is not an IPv%d network' % (cidr, version))
    return net


def _gateway(net, gateway):
    if gateway is None:
        return net[1]
    try:
        gw = ipaddress.ip_address(gateway)
    except ValueError as e:
        raise ProviderNetError('bad gateway %r: %s' % (gateway, e))
    if gw not in net or gw in (net.network_address, net.broadcast_address):
        raise ProviderNetError('gateway %s is not a host address of %s'
                               % (gw, net))
    return gw


def plan(device=DEVICE, peer=PEER, netns=NETNS, cidr=CIDR, cidr6=CIDR6,
         gateway=None, gateway6=None, physnet=PHYSNET,
         host_device=HOST_DEVICE):
    """The provider network's names and addresses (nothing is touched).

    ``gateway`` and ``gateway6`` default to the networks' first host
    address; ``cidr6=None`` leaves IPv6 out.  Raises
    :class:`ProviderNetError` for names Linux refuses and for networks or
    gateways that do not fit.
    """
    _check_name('device', device, IFNAMSIZ - 1)
    _check_name('peer', peer, IFNAMSIZ - 1)
    _check_name('host device', host_device, IFNAMSIZ - 1)
    _check_name('namespace', netns, 255)
    if device == peer:
        raise ProviderNetError('device and peer are both %s' % device)
    net = _network(cidr, 4)
    if net.num_addresses < 16:
        raise ProviderNetError('%s is too small (at least a /28)' % net)
    gw = _gateway(net, gateway)
    pool = (net[POOL_START], net[-1 - POOL_END_GAP])
    if pool[0] <= gw <= pool[1]:
        raise ProviderNetError('gateway %s is inside the allocation pool '
                               '%s-%s' % (gw, pool[0], pool[1]))
    host = net[HOST_INDEX]
    if host == gw or pool[0] <= host <= pool[1]:
        raise ProviderNetError('the host address %s is the gateway or in '
                               'the allocation pool' % host)
    if cidr6:
        net6 = _network(cidr6, 6)
        gw6 = str(_gateway(net6, gateway6))
        cidr6 = str(net6)
    else:
        gw6 = None
        cidr6 = None
    return Plan(device=device, peer=peer, netns=netns, cidr=str(net),
                gateway=str(gw), cidr6=cidr6, gateway6=gw6,
                pool=(str(pool[0]), str(pool[1])), physnet=physnet,
                host_device=host_device)


# -- the commands (pure) -----------------------------------------------------

def _ip_cmd(*args, ns=None):
    return ['ip'] + (['-n', ns] if ns else []) + list(args)


def up_commands(p):
    """``ip`` commands that make the pair and namespace from nothing."""
    return [
        _ip_cmd('netns', 'add', p.netns),
        _ip_cmd('link', 'add', p.device, 'type', 'veth', 'peer', 'name',
                p.peer, 'netns', p.netns),
        # no address at all, not even an IPv6 link-local one
        _ip_cmd('link', 'set', 'dev', p.device, 'addrgenmode', 'none'),
        _ip_cmd('link', 'set', 'dev', p.device, 'up'),
        _ip_cmd('link', 'set', 'dev', 'lo', 'up', ns=p.netns),
        _ip_cmd('addr', 'add', '%s/%d' % (p.gateway, p.prefixlen),
                'dev', p.peer, ns=p.netns),
        _ip_cmd('link', 'set', 'dev', p.peer, 'up', ns=p.netns),
    ]


def gateway6_commands(p):
    """The IPv6 gateway, set in place (``replace``: also on a pair made
    before dual stack); no duplicate address detection."""
    if not p.cidr6:
        return []
    return [_ip_cmd('addr', 'replace', '%s/%d' % (p.gateway6, p.prefixlen6),
                    'dev', p.peer, 'nodad', ns=p.netns)]


def down_commands(p, device_exists, netns_exists):
    """Deleting the root end deletes the peer and any macvtap on it."""
    return ([_ip_cmd('link', 'del', 'dev', p.device)] if device_exists
            else []) + ([_ip_cmd('netns', 'del', p.netns)] if netns_exists
                        else [])


# -- what is there (pure, on ``ip -j`` output) -------------------------------

def problem_of(p, netns_exists, device, peer, lo, with_ipv6=True):
    """Why the host's pair and namespace are not as :func:`ensure` makes
    them, or None.  ``device``, ``peer`` and ``lo`` are the entries of
    ``ip -j -d addr show dev X`` (``peer`` and ``lo`` in the namespace),
    None when absent.  ``with_ipv6=False`` ignores the IPv6 gateway (which
    :func:`ensure` sets in place)."""
    if not netns_exists:
        return 'no network namespace %s' % p.netns
    if not device:
        return 'no %s' % p.device
    if device.get('linkinfo', {}).get('info_kind') != 'veth':
        return '%s is not a veth' % p.device
    if 'UP' not in device.get('flags', ()):
        return '%s is down' % p.device
    if any(a.get('family') == 'inet' for a in device.get('addr_info', ())):
        return '%s has an IPv4 address' % p.device
    if not peer:
        return 'no %s in %s' % (p.peer, p.netns)
    if peer.get('ifindex') != device.get('link_index') or \
            peer.get('link_index') != device.get('ifindex'):
        return '%s is not the peer of %s' % (p.peer, p.device)
    if 'UP' not in peer.get('flags', ()):
        return '%s is down' % p.peer
    addrs = peer.get('addr_info', ())
    if not any(a.get('local') == p.gateway and
               a.get('prefixlen') == p.prefixlen for a in addrs):
        return '%s has not %s/%s' % (p.peer, p.gateway, p.prefixlen)
    if with_ipv6 and p.cidr6 and not any(
            a.get('local') == p.gateway6 and
            a.get('prefixlen') == p.prefixlen6 for a in addrs):
        return '%s has not %s/%s' % (p.peer, p.gateway6, p.prefixlen6)
    if not lo or 'UP' not in lo.get('flags', ()):
        return 'lo is down in %s' % p.netns
    return None


def users_of(p, links):
    """Macvtap/macvlan devices on ``p.device`` but the host's own
    (``p.host_device``), from ``ip -j -d link show`` in the root namespace
    (``link`` names the lower device)."""
    return [d['ifname'] for d in links
            if d.get('link') == p.device and d['ifname'] != p.host_device
            and d.get('linkinfo', {}).get('info_kind') in
            ('macvtap', 'macvlan')]


def host_access_commands(p):
    """The host's macvlan on ``p.device`` with ``p.host_address``."""
    return [
        _ip_cmd('link', 'add', p.host_device, 'link', p.device, 'type',
                'macvlan', 'mode', 'bridge'),
        _ip_cmd('addr', 'add', '%s/%d' % (p.host_address, p.prefixlen),
                'dev', p.host_device),
        _ip_cmd('link', 'set', 'dev', p.host_device, 'up'),
    ]


def host_access_problem_of(p, device, host):
    """Why the host's macvlan is not as :func:`host_access_commands` makes
    it, or None; ``device`` and ``host`` are the ``ip -j -d addr show``
    entries of ``p.device`` and ``p.host_device`` (None when absent)."""
    if not host:
        return 'no %s' % p.host_device
    info = host.get('linkinfo', {})
    if info.get('info_kind') != 'macvlan' or \
            info.get('info_data', {}).get('mode') != 'bridge':
        return '%s is not a macvlan in bridge mode' % p.host_device
    if not device or host.get('link_index') != device.get('ifindex'):
        return '%s is not on %s' % (p.host_device, p.device)
    if 'UP' not in host.get('flags', ()):
        return '%s is down' % p.host_device
    if not any(a.get('local') == p.host_address and
               a.get('prefixlen') == p.prefixlen
               for a in host.get('addr_info', ())):
        return '%s has not %s/%s' % (p.host_device, p.host_address,
                                     p.prefixlen)
    return None


# -- the host ----------------------------------------------------------------

def _ip_json(*args, ns=None):
    proc = subprocess.run(_ip_cmd('-j', *args, ns=ns), capture_output=True,
                          text=True)
    if proc.returncode:
        return []
    try:
        return json.loads(proc.stdout or '[]')
    except ValueError:
        return []


def _one(entries):
    return entries[0] if entries else None


def _netns_exists(p):
    return os.path.exists(os.path.join(NETNS_DIR, p.netns))


def _run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise ProviderNetError('%s exited %d: %s' % (
            ' '.join(cmd), proc.returncode, proc.stderr.strip()))


def problem(p, with_ipv6=True):
    """:func:`problem_of` for this host (reading the namespace needs
    root: without it the peer looks absent)."""
    return problem_of(
        p, _netns_exists(p),
        _one(_ip_json('-d', 'addr', 'show', 'dev', p.device)),
        _one(_ip_json('-d', 'addr', 'show', 'dev', p.peer, ns=p.netns)),
        _one(_ip_json('link', 'show', 'dev', 'lo', ns=p.netns)),
        with_ipv6=with_ipv6)


def ensure(p, runner=_run, say=None):
    """Make the pair and namespace of ``p`` (idempotent); True when made
    now, False when reused.

    Reused when they have the shape of :func:`up_commands`, removed and
    made again when not (``say`` hears why); the IPv6 gateway is set in
    place either way.  ``runner(cmd)`` runs each ``ip`` command and raises
    on failure (default: :class:`ProviderNetError` with ip's message).
    """
    why = problem(p, with_ipv6=False)
    made = why is not None
    if made:
        device_exists = bool(_ip_json('link', 'show', 'dev', p.device))
        netns_exists = _netns_exists(p)
        if say and (device_exists or netns_exists):
            say('provider network on the host: %s; making it again' % why)
        for cmd in (down_commands(p, device_exists, netns_exists) +
                    up_commands(p)):
            runner(cmd)
        why = problem(p, with_ipv6=False)
        if why:
            raise ProviderNetError('provider network on the host: %s' % why)
    for cmd in gateway6_commands(p):
        runner(cmd)
    return made


def ensure_host_access(p, runner=_run):
    """The host's macvlan (idempotent, after :func:`ensure`); True when
    made now, False when reused."""
    host = _one(_ip_json('-d', 'addr', 'show', 'dev', p.host_device))
    if host_access_problem_of(
            p, _one(_ip_json('-d', 'addr', 'show', 'dev', p.device)),
            host) is None:
        return False
    if host:
        runner(_ip_cmd('link', 'del', 'dev', p.host_device))
    for cmd in host_access_commands(p):
        runner(cmd)
    return True


def remove(p, force=False, runner=_run, say=None):
    """Remove the pair and namespace of ``p`` (idempotent); True when none
    of it is left.  While guests' macvtap devices sit on ``p.device``
    nothing is removed (their network would go) and False is returned,
    unless ``force``."""
    users = users_of(p, _ip_json('-d', 'link', 'show'))
    if users and not force:
        if say:
            say('leaving %s and %s: guests still use it (%s)' % (
                p.device, p.netns, ', '.join(users)))
        return False
    for cmd in down_commands(
            p, bool(_ip_json('link', 'show', 'dev', p.device)),
            _netns_exists(p)):
        runner(cmd)
    return True


# -- nova-clear-provider-net -------------------------------------------------

def _parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--device', default=DEVICE,
                        help='root end of the veth pair, the macvtap '
                             'lower device (default %(default)s)')
    common.add_argument('--peer', default=PEER,
                        help='the other end, in the namespace '
                             '(default %(default)s)')
    common.add_argument('--netns', default=NETNS,
                        help='the namespace (default %(default)s)')
    common.add_argument('--physnet', default=PHYSNET,
                        help='physical network name, for messages '
                             '(default %(default)s)')
    common.add_argument('--cidr', default=CIDR,
                        help='IPv4 network (default %(default)s)')
    common.add_argument('--gateway',
                        help='on the peer (default: first host address)')
    common.add_argument('--cidr6', default=CIDR6,
                        help='IPv6 network (default %(default)s)')
    common.add_argument('--gateway6',
                        help='on the peer, no DAD (default: first host '
                             'address)')
    common.add_argument('--no-ipv6', action='store_true',
                        help='IPv4 only')
    parser = argparse.ArgumentParser(
        prog='nova-clear-provider-net',
        description='The provider network on this host: a veth pair whose '
                    'root end is the macvtap lower device and whose peer, '
                    'with the gateway addresses, sits in a network '
                    'namespace.')
    sub = parser.add_subparsers(dest='action', required=True)
    up = sub.add_parser('up', parents=[common],
                        help='make it, or reuse it when it has that shape')
    up.add_argument('--host-access', action='store_true',
                    help='also a macvlan %s with the network\'s address '
                         'number %d, through which this host reaches the '
                         'guests' % (HOST_DEVICE, HOST_INDEX))
    down = sub.add_parser('down', parents=[common],
                          help='remove it, unless guests use it')
    down.add_argument('--force', action='store_true',
                      help='even when macvtap devices sit on the device')
    show = sub.add_parser('show', parents=[common],
                          help='the plan and what is wrong on this host '
                               '(as JSON; exit status 1 when not as made)')
    show.add_argument('--plan-only', action='store_true',
                      help='only the names and addresses (no root needed)')
    return parser


def plan_from_args(args):
    return plan(device=args.device, peer=args.peer, netns=args.netns,
                cidr=args.cidr, gateway=args.gateway,
                cidr6=None if args.no_ipv6 else args.cidr6,
                gateway6=args.gateway6, physnet=args.physnet)


def main(argv=None):
    args = _parser().parse_args(argv)

    def say(msg):
        print('nova-clear-provider-net: %s' % msg, file=sys.stderr)

    try:
        p = plan_from_args(args)
        if args.action == 'up':
            made = ensure(p, say=say)
            print('%s %s' % ('made' if made else 'reused', p.describe()))
            if args.host_access:
                ensure_host_access(p)
                print('host access: %s %s/%d' % (
                    p.host_device, p.host_address, p.prefixlen))
        elif args.action == 'down':
            if not remove(p, force=args.force, say=say):
                return 0
            print('no %s or namespace %s left' % (p.device, p.netns))
        else:
            out = p.as_dict()
            if not args.plan_only:
                out['problem'] = problem(p)
            print(json.dumps(out, indent=2, sort_keys=True))
            return 1 if out.get('problem') else 0
    except ProviderNetError as e:
        print('nova-clear-provider-net: error: %s' % e, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
