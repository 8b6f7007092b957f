"""nova-compute with nova-clear's driver, as the unprivileged system user
``nova`` (as devstack's stack user and every distribution's nova user).

What of it needs root goes through its privsep daemons, which it starts
with sudo (the sudoers rule allows exactly those); it reaches libvirtd
directly or, where polkit cannot admit the libvirt group, through
``libvirt_proxy``.  Its configuration ``nova-cpu.conf`` has no database
settings; the driver's section is written by
``nova_clear.deploy.nova_conf``, the code the devstack plugin calls too.
"""

import datetime
import grp
import hashlib
import json
import os
import pwd
import socket
import subprocess
import time

from nova_clear.deploy import nova_conf

from tools.aio import cloud
from tools.aio import conf
from tools.aio import process
from tools.aio.services import keystone
from tools.aio.services import libvirt_proxy
from tools.aio.services import nova
from tools.aio.services import serial_proxy
from tools.aio import settings
from tools.aio import state

USER = os.environ.get('AIO_COMPUTE_USER', 'nova')
GROUPS = ('libvirt', 'kvm')
STATE_PATH = nova.STATE_PATH
LOCKS = os.path.join(STATE_PATH, 'locks')
CONF = os.path.join(nova.DIR, 'nova-cpu.conf')
SUDOERS = '/etc/sudoers.d/nova-clear-aio'
# the privsep contexts nova-compute may start as root, by sudo
PRIVSEP_CONTEXTS = {
    'nova_sys_admin': 'nova.privsep.sys_admin_pctxt',
    'clear_sys_admin': 'nova_clear.privsep.clear_admin_pctxt',
    # os-vif's, for OVS (and Linux bridge) ports
    'vif_plug_ovs_privileged': 'vif_plug_ovs.privsep.vif_plug',
    'vif_plug_linux_bridge_privileged':
        'vif_plug_linux_bridge.privsep.vif_plug',
}
VIRT_TYPE = os.environ.get('AIO_VIRT_TYPE', 'auto')
KVM_PROBE_TIMEOUT = int(os.environ.get('AIO_KVM_PROBE_TIMEOUT', '8'))
ASSETS = os.environ.get('AIO_ASSETS', '/var/lib/nova-clear/guest')
PROCESSES = ['nova-compute']
PORTS = {}
CONFIG_FILES = {'nova-compute': [CONF]}
CATALOG = []
# its service user and placement's endpoint exist before it starts
NEEDS = (keystone,)
# this run's start of each nova-compute: {name: (UTC start time, its log's
# size then)}
_started = {}


def configure():
    uid, gid = user()
    own_dirs(uid, gid)
    from tools.aio.services import compute2
    write_conf(CONF, socket.gethostname(), STATE_PATH, nova.INSTANCES, LOCKS,
               libvirt_proxy.uri(_libvirt_direct()), ASSETS,
               serial_proxy.PORT_RANGE, compute2.host1_migration())
    write_sudoers()
    # new driver code (tools/setup-host reinstalled nova-clear), or a
    # nova-compute of another user (root, before it ran unprivileged)
    code = _driver_digest()
    if state.load().get('driver_digest') != code:
        for name in ('nova-compute', 'nova-compute-2'):
            if process.stop(name):
                process.say('the installed nova-clear changed: restarting '
                            '%s' % name)
        state.update(driver_digest=code)
    pid = process.running_pid('nova-compute')
    if pid and process.owner(pid) != uid:
        process.say('nova-compute runs as uid %d, not as %s: restarting it'
                    % (process.owner(pid), USER))
        process.stop('nova-compute')


def write_conf(path, host, state_path, instances, locks, connection_uri,
               assets, serial_range, migration):
    """A nova-compute's configuration (``path``): its ``[DEFAULT] host``,
    state and instances paths, lock directory, libvirt URI, guest assets,
    serial console ports and ``[clear]`` live migration settings
    (``migration``)."""
    gid = user()[1]
    cpu = nova.common()
    for section in ('keystone_authtoken', 'scheduler', 'conductor'):
        del cpu[section]
    cpu['DEFAULT'].update(host=host, state_path=state_path,
                          instances_path=instances)
    cpu['compute'] = {'max_concurrent_builds': '10',
                      # the macvtap device of a port at the destination is
                      # made by libvirt during the migration: Neutron can
                      # report it plugged only after the switch-over, so the
                      # source must not wait for network-vif-plugged first
                      'live_migration_wait_for_vif_plug': 'false'}
    # its own lock directory (the other services run as root)
    cpu['oslo_concurrency'] = {'lock_path': locks}
    # the interactive serial console, through nova-serialproxy
    cpu['serial_console'] = dict(serial_proxy.compute_settings(),
                                 port_range=serial_range)
    # a guest with ports starts paused until neutron reports them plugged
    # (network-vif-plugged); no event in time fails the build
    cpu['DEFAULT']['vif_plugging_is_fatal'] = 'true'
    cpu['DEFAULT']['vif_plugging_timeout'] = '60'
    # the resource tracker's periodic update (nova's default: 60 s)
    cpu['DEFAULT']['update_resources_interval'] = '20'
    # tiny Clear Containers on a 2-core host: nova's default 4.0 admits
    # only 8 one-vCPU servers, fewer than tempest keeps at once
    cpu['DEFAULT']['cpu_allocation_ratio'] = '16.0'
    # "Final resource view" (debug) after each successful update tells
    # when the resource tracker can claim: wait() looks for it
    from oslo_log import _options as log_options
    cpu['DEFAULT']['default_log_levels'] = ','.join(
        list(log_options.DEFAULT_LOG_LEVELS) +
        ['nova.compute.resource_tracker=DEBUG'])
    conf.write_ini(path, cpu)
    # its privsep daemons (nova's, nova-clear's, os-vif's) start as
    # devstack starts them, through sudo, with the venv's privsep-helper
    # and this file
    helper = 'sudo %s --config-file %s' % (
        settings.venv_tool('privsep-helper'), path)
    nova_conf.configure(path, dict({
        'virt_type': VIRT_TYPE,
        'kvm_probe_timeout': KVM_PROBE_TIMEOUT,
        'assets_path': assets,
        'connection_uri': connection_uri,
    }, **migration), {section: {'helper_command': helper}
                      for section in PRIVSEP_CONTEXTS})
    # readable by nova-compute, writable only by root: the privsep
    # daemons read it as root
    os.chown(path, 0, gid)
    os.chmod(path, 0o640)


def init():
    _guest_assets()


def start():
    """Start nova-compute (unprivileged, with its user's groups)."""
    process.say('nova-compute as %s (compute_driver = clear.ClearDriver, '
                'virt_type=%s)' % (USER, VIRT_TYPE))
    start_compute('nova-compute', CONF, STATE_PATH)


def start_compute(name, path, state_path):
    """Start the nova-compute ``name`` with the configuration ``path``."""
    begun = datetime.datetime.now(datetime.timezone.utc).replace(
        tzinfo=None, microsecond=0)
    offset = process.log_size(name)
    if process.start(name, [
            settings.venv_tool('nova-compute'), '--config-file', path],
            user=user(), cwd=state_path,
            env={'HOME': state_path, 'USER': USER, 'LOGNAME': USER,
                 'TMPDIR': '/tmp'}) or name not in _started:
        _started[name] = begun, offset


def wait():
    """nova-compute reports up, its resource tracker claims, its host is
    in cell1 and its node in placement."""
    wait_compute('nova-compute', socket.gethostname(), start)


def wait_compute(name, host, restart):
    """``name`` (of ``host``) is up, mapped into cell1, in placement."""
    conn = cloud.connection()
    _wait_up(conn, name, host, restart)
    nova.discover_hosts()

    def in_placement():
        process.ensure_alive(name)
        return any(True for _ in conn.placement.resource_providers(
            name=host))
    process.wait_for(in_placement, 120, 'the compute node %s in placement'
                     % host, process.log_path(name), interval=1)


def stop():
    process.stop_all(PROCESSES)


def _wait_up(conn, name, host, restart, timeout=240):
    """Up, by a heartbeat of this process; started again when foreign
    domains stopped it.

    The driver counts every domain carrying nova-clear's metadata as its
    own.  A first start refuses to run while such domains exist (nova's
    "My hypervisor has existing instances" check), e.g. while the
    functional tests run on the same libvirtd: wait and try again.
    """
    deadline = time.monotonic() + timeout

    def compute_up():
        if not process.running_pid(name):
            if 'appear to be a new service' in process.tail(
                    process.log_path(name), 30) and \
                    time.monotonic() < deadline - 30:
                process.say('nova-compute saw nova-clear domains it does '
                            'not know (another user of this libvirtd?); '
                            'starting it again')
                time.sleep(5)
                restart()
                return False
            process.ensure_alive(name)
        started, offset = _started[name]
        for s in conn.compute.services(binary='nova-compute', host=host):
            # a heartbeat of this process, not of the one before it
            updated = datetime.datetime.fromisoformat(
                s.updated_at.replace('Z', '')[:19]) if s.updated_at \
                else None
            if not (s.state == 'up' and updated is not None and
                    updated >= started):
                return False
            # and its resource tracker has done one full update (until
            # then it cannot claim resources for a build)
            return 'Final resource view' in process.log_since(
                name, offset)
        return False
    process.wait_for(compute_up, timeout, '%s to report up and '
                     'its first resource update' % name,
                     process.log_path(name), interval=1)


# -- the unprivileged user ---------------------------------------------------

def user():
    """The system user nova-compute runs as (made once); (uid, gid).

    Member of ``libvirt`` (qemu:///system) and ``kvm`` (/dev/kvm), as
    Debian's nova-compute-kvm package makes its ``nova`` user.  A user of
    that name that exists already is reused, and only gets the groups.
    """
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        process.say('creating the system user %s for nova-compute' % USER)
        process.run(['useradd', '--system', '--user-group', '--home-dir',
                     STATE_PATH, '--no-create-home', '--shell',
                     '/usr/sbin/nologin', '--comment',
                     'nova-compute (all-in-one)', USER])
        pw = pwd.getpwnam(USER)
    missing = [g for g in GROUPS
               if USER not in grp.getgrnam(g).gr_mem and
               grp.getgrnam(g).gr_gid != pw.pw_gid]
    if missing:
        process.run(['usermod', '--append', '--groups', ','.join(missing),
                     USER])
    return pw.pw_uid, pw.pw_gid


def own_dirs(uid, gid, state_path=STATE_PATH, locks=LOCKS,
             instances=nova.INSTANCES, log='nova-compute'):
    """nova-compute's state, lock, instance and cache directories are the
    compute user's.

    Files left by a nova-compute that ran as root (an all-in-one made
    before it ran unprivileged) become the user's too, except what root
    keeps on purpose: virtlogd's console logs (read through nova's privsep
    daemon) and root filesystem trees a root daemon may be unpacking
    (``*.tree``, removed by that daemon).
    """
    for d in (state_path, locks, instances):
        os.makedirs(d, exist_ok=True)
        os.chown(d, uid, gid)
    # libvirt's QEMU user must reach the instance disks
    for d in (settings.AIO_HOME, settings.DATA, state_path, instances):
        os.chmod(d, 0o755)
    for top, dirs, files in os.walk(state_path):
        dirs[:] = [d for d in dirs if not d.endswith('.tree')]
        for name in dirs + files:
            if name == 'console.log' or name.startswith(
                    'nova-clear-probe-'):
                continue
            path = os.path.join(top, name)
            try:
                st = os.lstat(path)
                if st.st_uid == 0 and not os.path.islink(path):
                    os.chown(path, uid, gid, follow_symlinks=False)
            except FileNotFoundError:
                pass
    # its log: the launcher opens it, nova-compute's output goes there
    path = process.log_path(log)
    with open(path, 'a'):
        pass
    os.chown(path, uid, gid)


def write_sudoers():
    """Let the compute user start its privsep daemons as root, and only
    those: the venv's privsep-helper with nova-compute's (root-owned)
    configuration file, one of PRIVSEP_CONTEXTS, and a socket under /tmp
    (oslo.privsep's ``tempfile.mkdtemp()``).  Checked with visudo before
    it is installed."""
    helper = settings.venv_tool('privsep-helper')
    lines = ['# written by nova-clear tools/allinone: %s (nova-compute)'
             % USER,
             '# may start these privsep daemons as root, nothing else',
             'Defaults:%s !requiretty' % USER]
    from tools.aio.services import compute2
    for path in (CONF, compute2.CONF):
        for context in PRIVSEP_CONTEXTS.values():
            # sudo >= 1.9.10: an argument list between ^ and $ is a regular
            # expression; no other argument, and a fixed socket name
            lines.append(
                '%s ALL=(root) NOPASSWD: %s ^--config-file %s '
                '--privsep_context %s --privsep_sock_path '
                '/tmp/tmp[a-z0-9_]+/privsep[.]sock$'
                % (USER, helper, path.replace('.', '[.]'),
                   context.replace('.', '[.]')))
    text = '\n'.join(lines) + '\n'
    try:
        with open(SUDOERS) as f:
            if f.read() == text:
                return
    except FileNotFoundError:
        pass
    tmp = os.path.join(os.path.dirname(SUDOERS), '.nova-clear-aio.tmp')
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o440),
              'w') as f:
        f.write(text)
    if process.run(['visudo', '-c', '-q', '-f', tmp], check=False):
        os.unlink(tmp)
        raise process.Failure('the sudoers rule for %s does not parse'
                              % USER, process.log_path('bootstrap'))
    os.replace(tmp, SUDOERS)
    process.say('sudoers: %s may run %s as root for its privsep daemons (%s)'
                % (USER, helper, SUDOERS))


def as_user(cmd):
    uid, gid = user()
    return ['setpriv', '--reuid', str(uid), '--regid', str(gid),
            '--init-groups'] + cmd


def _libvirt_direct():
    """Whether the compute user can use qemu:///system as it is.

    Not on hosts without the D-Bus system bus (no systemd) where libvirtd
    leaves the libvirt group to polkit, which cannot run there.
    """
    proc = subprocess.run(
        as_user(['virsh', '-c', 'qemu:///system', 'version']),
        capture_output=True, text=True, cwd='/', timeout=60)
    return proc.returncode == 0


# -- the driver --------------------------------------------------------------

def _driver_digest():
    """Digest of the nova-clear code installed in the venv."""
    top = subprocess.run(
        [settings.venv_tool('python'), '-c',
         'import os, nova_clear; '
         'print(os.path.dirname(nova_clear.__file__))'],
        capture_output=True, text=True, cwd='/').stdout.strip()
    digest = hashlib.sha256()
    for base, dirs, files in sorted(os.walk(top)):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(('.py', '.sh')):
                with open(os.path.join(base, f), 'rb') as fh:
                    digest.update(f.encode() + fh.read())
    return digest.hexdigest()


def _guest_assets():
    """The driver's guest assets (kernel, initramfs with its agent).

    Rebuilt when the installed nova-clear carries another agent (the guest
    side of what the driver passes, e.g. network configuration); a minimal
    kernel already there (the driver prefers it) is kept and its initramfs
    rebuilt too (the kernel itself is cached).
    """
    from nova_clear.guest import assets
    minimal = os.path.join(ASSETS, assets.MINIMAL_SUBDIR)
    has_minimal = os.path.exists(os.path.join(minimal, 'manifest.json'))

    def current(path):
        # the agent, and a manifest that says whether the kernel drives
        # virtio-pci (older builds do not: the q35 variant needs it)
        try:
            with open(os.path.join(path, 'manifest.json')) as f:
                features = json.load(f).get('kernel_features') or {}
        except (OSError, ValueError):
            return False
        return assets.agent_is_current(path) and 'virtio_pci' in features
    if current(ASSETS) and (not has_minimal or current(minimal)):
        return
    process.say('building the guest assets into %s%s' % (
        ASSETS, ' (built by another nova-clear)'
        if os.path.exists(os.path.join(ASSETS, 'manifest.json')) else ''))
    process.run([settings.venv_tool('nova-clear-build-guest'), '--dest',
                 ASSETS] + (['--minimal-kernel'] if has_minimal else []),
                'build-guest')
