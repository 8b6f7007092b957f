"""The provider network on the host: a veth pair and a network namespace.

``NET.device`` stays in the root namespace, up and without an address, as the
macvtap lower device of the physical network ``PHYSNET`` (Neutron's macvtap
agent maps it); its peer ``NET.peer`` sits in the namespace
``NET.netns`` with the gateway addresses and stands in for the
provider network's router and a client.  The Neutron network on it is
made by ``cloud.provider_network``; the names and addresses of both are
here, and the driver and the integration tests rely on them (see
"Networking" in doc/source/allinone.rst).
"""

import subprocess
import time

from nova_clear.deploy import provider_net
from tools.aio import process
from tools.aio import state

# the product's defaults: the devstack plugin and the tests use the same
# module (nova-clear-provider-net)
NET = provider_net.plan()
# the second compute host's interface (--computes 2): a veth pair of its
# own into the same namespace, where a bridge joins both peers and holds
# the gateway addresses
NET2 = provider_net.plan(device='clearphys1', peer='clearpeer1')
BRIDGE = 'clearbr0'


def names():
    """The provider network's names and addresses (aio.json "network")."""
    return dict(NET.as_dict(), macvtap_mode='bridge')


def describe():
    return NET.describe()


def _run(cmd):
    process.run(cmd, 'network')


def problem():
    """Why the veth pair/namespace is not as we make it (None: it is)."""
    if _bridged():
        return _bridged_problem()
    return provider_net.problem(NET, with_ipv6=False)


def _ns_json(*args):
    return provider_net._ip_json(*args, ns=NET.netns)


def _bridged():
    """Whether the first host's peer is a port of the bridge (made by a
    two-host run; kept when one host runs again)."""
    peer = provider_net._one(_ns_json('-d', 'link', 'show', 'dev',
                                      NET.peer))
    return bool(peer and peer.get('master') == BRIDGE)


def _bridged_problem():
    """:func:`provider_net.problem_of` for a pair whose peer is a port of
    ``BRIDGE`` (which has the gateway addresses)."""
    bridge = provider_net._one(_ns_json('-d', 'addr', 'show', 'dev',
                                        BRIDGE))
    if not bridge or 'UP' not in bridge.get('flags', ()):
        return 'the bridge %s in %s is missing or down' % (
            BRIDGE, NET.netns)
    peer = provider_net._one(_ns_json('-d', 'addr', 'show', 'dev',
                                      NET.peer))
    peer = dict(peer, addr_info=bridge.get('addr_info', ()))
    return provider_net.problem_of(
        NET, provider_net._netns_exists(NET),
        provider_net._one(provider_net._ip_json('-d', 'addr', 'show', 'dev',
                                                NET.device)),
        peer, provider_net._one(_ns_json('link', 'show', 'dev', 'lo')),
        with_ipv6=False)


def _second_ok():
    dev = provider_net._one(provider_net._ip_json('-d', 'link', 'show',
                                                  'dev', NET2.device))
    peer = provider_net._one(_ns_json('-d', 'link', 'show', 'dev',
                                      NET2.peer))
    return bool(dev and peer and 'UP' in dev.get('flags', ()) and
                'UP' in peer.get('flags', ()) and
                peer.get('master') == BRIDGE and
                peer.get('ifindex') == dev.get('link_index'))


def _ns(*args):
    return ['ip', '-n', NET.netns] + list(args)


def _second_up():
    """Host 2's interface: the bridge (the gateway addresses move from the
    first peer to it), then the second veth pair, its peer on the bridge."""
    if not _bridged():
        process.say('provider network: bridge %s in %s joins %s and %s'
                    % (BRIDGE, NET.netns, NET.peer, NET2.peer))
        if not provider_net._one(_ns_json('link', 'show', 'dev', BRIDGE)):
            # no STP: ports forward at once
            _run(_ns('link', 'add', BRIDGE, 'type', 'bridge', 'stp_state',
                     '0', 'forward_delay', '0'))
            _run(_ns('link', 'set', 'dev', BRIDGE, 'addrgenmode', 'none'))
        _run(_ns('addr', 'flush', 'dev', NET.peer))
        _run(_ns('link', 'set', 'dev', NET.peer, 'master', BRIDGE))
        _run(_ns('addr', 'replace', '%s/%d' % (NET.gateway, NET.prefixlen),
                 'dev', BRIDGE))
        _run(_ns('addr', 'replace', '%s/%d' % (NET.gateway6, NET.prefixlen6),
                 'dev', BRIDGE, 'nodad'))
        _run(_ns('link', 'set', 'dev', BRIDGE, 'up'))
    if _second_ok():
        return
    process.say('provider network: %s <-> %s (host 2)' % (NET2.device,
                                                          NET2.peer))
    if provider_net._ip_json('link', 'show', 'dev', NET2.device):
        _run(['ip', 'link', 'del', 'dev', NET2.device])
    _run(['ip', 'link', 'add', NET2.device, 'type', 'veth', 'peer', 'name',
          NET2.peer, 'netns', NET.netns])
    _run(['ip', 'link', 'set', 'dev', NET2.device, 'addrgenmode', 'none'])
    _run(['ip', 'link', 'set', 'dev', NET2.device, 'up'])
    _run(_ns('link', 'set', 'dev', NET2.peer, 'master', BRIDGE))
    _run(_ns('link', 'set', 'dev', NET2.peer, 'up'))


def up():
    """The macvtap lower device and the provider namespace (idempotent):
    reused when it has the shape above, made again when not; the IPv6
    gateway is set in place (hosts set up before dual stack keep their veth
    and the guests' macvtaps on it)."""
    process.say('provider network on the host: %s' % describe())
    try:
        made = False
        if not (_bridged() and _bridged_problem() is None):
            made = provider_net.ensure(NET, runner=_run, say=process.say)
        from tools.aio import settings
        if settings.computes() >= 2:
            _second_up()
        # tempest logs in to its servers from here (doc/source/tempest.rst)
        if provider_net.ensure_host_access(NET, runner=_run):
            process.say('host access to the provider network: %s %s' % (
                NET.host_device, NET.host_address))
    except provider_net.ProviderNetError as e:
        raise process.Failure(str(e), process.log_path('network'))
    created = made or (state.load().get('network') or {}).get(
        'host_created', False)
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
    """Remove the veth pair and namespace, if this tool made them (not
    while guests' macvtaps sit on it)."""
    st = state.load()
    net = st.get('network') or {}
    host2 = provider_net.users_of(NET2, provider_net._ip_json(
        '-d', 'link', 'show'))
    if host2:
        process.say('leaving %s and %s: host 2\'s guests still use it (%s)'
                    % (NET2.device, NET.netns, ', '.join(host2)))
        return
    if not net.get('host_created') or \
            not provider_net.remove(NET, runner=_run, say=process.say):
        return
    net['host_created'] = False
    st['network'] = net
    state.save(st)
    process.say('removed %s and the namespace %s' % (NET.device, NET.netns))


def ping_from_provider(address, timeout=60):
    """Ping ``address`` from the provider namespace (a client on the
    network); returns (seconds until it answered, the ping's output)."""
    t0 = time.monotonic()
    cmd = ['ip', 'netns', 'exec', NET.netns, 'busybox', 'ping', '-c',
           '1', '-W', '1', address]
    while True:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0:
            return time.monotonic() - t0, proc.stdout
        if time.monotonic() - t0 > timeout:
            raise process.Failure('%s does not answer ping from %s: %s' % (
                address, NET.netns, proc.stdout + proc.stderr),
                process.log_path('nova-compute'))
        time.sleep(0.2)
