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


def names():
    """The provider network's names and addresses (aio.json "network")."""
    return dict(NET.as_dict(), macvtap_mode='bridge')


def describe():
    return NET.describe()


def _run(cmd):
    process.run(cmd, 'network')


def problem():
    """Why the veth pair/namespace is not as we make it (None: it is)."""
    return provider_net.problem(NET, with_ipv6=False)


def up():
    """The macvtap lower device and the provider namespace (idempotent):
    reused when it has the shape above, made again when not; the IPv6
    gateway is set in place (hosts set up before dual stack keep their veth
    and the guests' macvtaps on it)."""
    process.say('provider network on the host: %s' % describe())
    try:
        made = provider_net.ensure(NET, runner=_run, say=process.say)
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
