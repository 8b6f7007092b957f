"""The second compute host (``tools/allinone up|start --computes 2``).

Everything a second machine would have of its own, on this one:

``libvirtd-2``, ``virtlogd-2``
    a second libvirtd + virtlogd in a private mount namespace
    (``nova_clear.deploy.second_libvirtd``, root ``LIBVIRT_ROOT``), with
    its own host UUID, configuration, state, logs and socket; stopped by
    the PIDs of its own pid files.
``nova-compute-2``
    nova-compute as the same unprivileged user as the first one, with
    ``[DEFAULT] host = <hostname>-2``, its own state path, instances path
    (and so image cache: ``<instances>/_clear_base``), lock directory,
    guest assets copy and serial console ports, connected to
    ``libvirtd-2``'s socket.  It runs in the host's mount namespace: the
    second daemon's namespace differs only under /run/libvirt,
    /var/lib/libvirt, /etc/libvirt, /var/log/libvirt and
    /var/cache/libvirt, none of which nova-compute uses (every path it
    hands libvirt -- instances, image cache, assets, console logs -- is
    the same in both namespaces), and its privsep daemons (sudo) then
    work as the first host's do.
``neutron-macvtap-agent-2``
    the macvtap agent of host 2 (``[DEFAULT] host = <hostname>-2``) on
    its own provider interface ``hostnet.NET2.device`` (clearphys1, whose
    veth peer is bridged with the first host's in the provider
    namespace): its ports bind to it with ``macvtap_source`` clearphys1.

Live migration (doc/source/migration.rst, "Two compute hosts on one
machine"): host 1's libvirtd reaches host 2's through its socket, host 2's
reaches host 1's through the ``host1-run`` bind mount; QEMU's migration
and NBD ports on 127.0.0.1 (host 2's in 49400-49463).
"""

import os
import shutil
import socket

from nova_clear.deploy import second_libvirtd

from tools.aio import hostnet
from tools.aio import process
from tools.aio.services import keystone
from tools.aio.services import neutron
from tools.aio.services import nova
from tools.aio.services import nova_compute
from tools.aio import settings
from tools.aio import state

HOST = socket.gethostname() + '-2'
ROOT = os.path.join(settings.DATA, 'host2')
LIBVIRT_ROOT = os.path.join(ROOT, 'libvirt')
STATE_PATH = os.path.join(ROOT, 'nova')
INSTANCES = os.path.join(STATE_PATH, 'instances')
LOCKS = os.path.join(STATE_PATH, 'locks')
ASSETS = os.path.join(ROOT, 'guest')
CONF = os.path.join(nova.DIR, 'nova-cpu-2.conf')
AGENT_CONF = os.path.join(neutron.DIR, 'plugins', 'ml2',
                          'macvtap_agent-2.ini')
# host 1's guests' serial consoles use serial_proxy.PORT_RANGE (10000:20000)
SERIAL_RANGE = '20001:21000'
MIGRATION_PORTS = (49400, 49463)
INBOUND = '127.0.0.1'
PROCESSES = ['virtlogd-2', 'libvirtd-2', 'neutron-macvtap-agent-2',
             'nova-compute-2']
PORTS = {}
CONFIG_FILES = {'nova-compute-2': [CONF],
                'neutron-macvtap-agent-2': [neutron.CONF, AGENT_CONF]}
CATALOG = []
# nova: its API answers (host 2's compute service is enabled or disabled)
NEEDS = (keystone, nova)


def wanted():
    return settings.computes() >= 2


def host1_migration():
    """The first host's ``[clear]`` live migration settings (written
    whether or not host 2 runs: the file stays the same)."""
    return {'live_migration_uri': second_libvirtd.uri(LIBVIRT_ROOT),
            'live_migration_inbound_addr': INBOUND}


def configure():
    if not wanted():
        return
    uid, gid = nova_compute.user()
    nova_compute.own_dirs(uid, gid, STATE_PATH, LOCKS, INSTANCES,
                          'nova-compute-2')
    os.chmod(ROOT, 0o755)
    nova_compute.write_conf(
        CONF, HOST, STATE_PATH, INSTANCES, LOCKS,
        second_libvirtd.uri(LIBVIRT_ROOT), ASSETS, SERIAL_RANGE,
        {'live_migration_uri': second_libvirtd.peer_uri(LIBVIRT_ROOT),
         'live_migration_inbound_addr': INBOUND})
    neutron.write_agent_conf(AGENT_CONF, HOST, hostnet.NET2.device)


def init():
    if wanted():
        _assets()


def _assets():
    """Host 2's own copy of the guest assets (libvirt's DAC relabels a
    domain's kernel and initrd: two daemons must not share them)."""
    src = nova_compute.ASSETS
    want = open(os.path.join(src, 'manifest.json'), 'rb').read()
    try:
        with open(os.path.join(ASSETS, 'manifest.json'), 'rb') as f:
            if f.read() == want:
                return
    except OSError:
        pass
    process.say('host 2: copying the guest assets to %s' % ASSETS)
    if os.path.exists(ASSETS):
        shutil.rmtree(ASSETS)
    shutil.copytree(src, ASSETS, symlinks=True)


def start():
    if not wanted():
        # one host asked for: host 2 goes (its guests, if any, keep
        # running in its namespace until it comes back), its compute
        # service is disabled first, while it runs (Nova's API asks the
        # compute host to set its provider's COMPUTE_STATUS_DISABLED trait:
        # a host that is down costs an RPC timeout).  Disabled even when
        # it no longer runs (stopped by a restart, or killed): an enabled
        # host 2 that Nova still counts as up for service_down_time would
        # be given new servers that never build.
        _service(enable=False)
        stop()
        return
    process.say('host 2 (%s): libvirtd + virtlogd in a mount namespace '
                'under %s' % (HOST, LIBVIRT_ROOT))
    try:
        pids = second_libvirtd.start(LIBVIRT_ROOT,
                                     migration_ports=MIGRATION_PORTS)
    except (RuntimeError, OSError) as e:
        raise process.Failure('host 2: %s' % e, os.path.join(
            LIBVIRT_ROOT, 'log', 'libvirtd.log'))
    for name, pid in pids.items():
        process.adopt(name + '-2', pid)
    # the compute user reaches the socket directory
    os.chmod(ROOT, 0o755)
    os.chmod(LIBVIRT_ROOT, 0o755)
    process.start('neutron-macvtap-agent-2', [
        settings.venv_tool('python'),
        os.path.join(settings.ROOT, 'tools', 'macvtap_agent.py'),
        '--config-file', neutron.CONF, '--config-file', AGENT_CONF,
        '--log-file', process.log_path('neutron-macvtap-agent-2')])
    nova_compute.start_compute('nova-compute-2', CONF, STATE_PATH)


def _service(enable):
    """Enable or disable host 2's nova-compute service, if Nova has one
    (it has after the first two-host start)."""
    from tools.aio import cloud
    try:
        services = list(cloud.connection().compute.services(
            host=HOST, binary='nova-compute'))
    except Exception as e:  # noqa: BLE001 - Nova not answering: no change
        process.say('host 2\'s compute service not looked up: %s' % e)
        return
    if not services or (services[0].status == 'enabled') == enable:
        return
    cmd = [settings.venv_tool('openstack'), 'compute', 'service', 'set',
           '--enable' if enable else '--disable']
    if not enable:
        cmd += ['--disable-reason', 'tools/allinone: one compute host']
    if process.run(cmd + [HOST, 'nova-compute'], 'bootstrap',
                   env=cloud.cli_env(), check=False) == 0:
        process.say('%s the nova-compute service of %s' % (
            'enabled' if enable else 'disabled', HOST))


def wait():
    if not wanted():
        return
    from tools.aio import cloud
    neutron.wait_agent(cloud.connection(), HOST, 'neutron-macvtap-agent-2')
    nova_compute.wait_compute('nova-compute-2', HOST, lambda: (
        nova_compute.start_compute('nova-compute-2', CONF, STATE_PATH)))
    # enabled once it is up (see start)
    _service(enable=True)


def stop():
    for name in ('nova-compute-2', 'neutron-macvtap-agent-2'):
        if process.stop(name):
            process.say('stopped %s' % name)
    stop_daemons()


def stop_daemons():
    stopped = second_libvirtd.stop(LIBVIRT_ROOT)
    for name in ('libvirtd-2', 'virtlogd-2'):
        process.forget(name)
    if stopped:
        process.say('stopped host 2\'s libvirtd and virtlogd (pids %s)'
                    % ', '.join(map(str, stopped)))


def record():
    """Host 2 in aio.json (tests/integration/test_live_migration.py)."""
    if not wanted():
        state.update(computes=1, hosts=[socket.gethostname()])
        return
    state.update(computes=2, hosts=[socket.gethostname(), HOST], host2={
        'host': HOST, 'libvirt_uri': second_libvirtd.uri(LIBVIRT_ROOT),
        'libvirt_root': LIBVIRT_ROOT, 'instances_path': INSTANCES,
        'compute_conf': CONF, 'physical_interface': hostnet.NET2.device})
