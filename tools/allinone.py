"""All-in-one OpenStack with nova-clear on one Debian 12 machine.

Run through ``tools/allinone`` (which installs the Debian packages and the
venv first).  Every service runs in the background on 127.0.0.1, started
by this program in its own process group; ``stop`` ends exactly those, by
the PIDs recorded in ``$AIO_HOME/run``.  Logs: ``$AIO_HOME/logs``.

Guest networking: Neutron's ML2 macvtap driver and the macvtap agent on
the veth ``clearphys0`` (physnet ``clearnet``); its peer holds the gateway
10.77.0.1 in the netns ``nova-clear-provider`` (see "Networking" in
doc/source/allinone.rst).

Subcommands: ``up`` (start + bootstrap + demo boot), ``start`` (start +
bootstrap, no demo), ``boot`` (the demo: one or more servers through the
API, timed), ``status``, ``stop``, ``restart SERVICE``.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from nova_clear.deploy import nova_conf  # noqa: E402

AIO_HOME = os.environ.get('AIO_HOME', '/opt/nova-clear-aio')
VENV = os.environ.get('AIO_VENV', os.path.join(AIO_HOME, 'venv'))
BIN = os.path.join(VENV, 'bin')
ETC = os.path.join(AIO_HOME, 'etc')
DATA = os.path.join(AIO_HOME, 'data')
LOGS = os.path.join(AIO_HOME, 'logs')
RUN = os.path.join(AIO_HOME, 'run')
STATE = os.path.join(AIO_HOME, 'aio.json')
ASSETS = os.environ.get('AIO_ASSETS', '/var/lib/nova-clear/guest')
INSTANCES = os.path.join(DATA, 'nova', 'instances')
# nova-compute runs as this unprivileged system user (as devstack's stack
# user and every distribution's nova user); everything else of it that
# needs root goes through its privsep daemons, started with sudo
COMPUTE_USER = os.environ.get('AIO_COMPUTE_USER', 'nova')
COMPUTE_GROUPS = ('libvirt', 'kvm')
COMPUTE_STATE = os.path.join(DATA, 'nova')
COMPUTE_LOCKS = os.path.join(COMPUTE_STATE, 'locks')
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
LIBVIRT_SOCK = '/run/libvirt/libvirt-sock'
LIBVIRT_PROXY_SOCK = os.path.join(AIO_HOME, 'run', 'libvirt',
                                  'libvirt-sock')
VIRT_TYPE = os.environ.get('AIO_VIRT_TYPE', 'auto')
KVM_PROBE_TIMEOUT = int(os.environ.get('AIO_KVM_PROBE_TIMEOUT', '8'))
HOST = '127.0.0.1'
MYSQL_SOCK = '/run/mysqld/mysqld.sock'
REGION = 'RegionOne'
COMPUTE_MICROVERSION = '2.90'

PORTS = {'keystone': 5000, 'glance': 9292, 'placement': 8778,
         'neutron': 9696, 'nova-api': 8774, 'mariadb': 3306,
         'rabbitmq': 5672}
WSGI = {'keystone': 'keystone.wsgi.api:application',
        'glance': 'glance.wsgi.api:application',
        'placement': 'placement.wsgi.api:application',
        'neutron': 'neutron.wsgi.api:application',
        'nova-api': 'nova.wsgi.osapi_compute:application'}
SQLITE_APPS = ('keystone', 'glance')
# configuration files (under $AIO_HOME/etc) of each service
CONFIG_FILES = {
    'keystone': ['keystone/keystone.conf'],
    'glance': ['glance/glance-api.conf', 'glance/glance-api-paste.ini'],
    'placement': ['placement/placement.conf'],
    'neutron': ['neutron/neutron.conf', 'neutron/plugins/ml2/ml2_conf.ini',
                'neutron/api-paste.ini'],
    'nova-api': ['nova/nova.conf', 'nova/api-paste.ini'],
    'nova-conductor': ['nova/nova-services.conf'],
    'nova-scheduler': ['nova/nova-services.conf'],
    'neutron-rpc-server': ['neutron/neutron.conf',
                           'neutron/plugins/ml2/ml2_conf.ini'],
    'neutron-macvtap-agent': ['neutron/neutron.conf',
                              'neutron/plugins/ml2/macvtap_agent.ini'],
    'nova-compute': ['nova/nova-cpu.conf'],
    'libvirt-proxy': [],
}
# start order; stop goes the other way
SERVICES = ['mariadb', 'epmd', 'rabbitmq', 'keystone', 'glance',
            'placement', 'neutron', 'neutron-rpc-server',
            'neutron-macvtap-agent', 'nova-api', 'nova-conductor',
            'nova-scheduler', 'libvirt-proxy', 'nova-compute']
# Guest networking: Neutron's macvtap ML2 mechanism driver and agent.  The
# host side is a veth pair: PHYS_IF stays in the root namespace, up and
# without an address, as the macvtap lower device of physical network
# PHYSNET; its peer sits in the namespace PROVIDER_NETNS with the gateway
# address (it stands in for the provider network's router and a client).
# The driver and the integration tests rely on these names.
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
MACVTAP_AGENT_TYPE = 'Macvtap agent'
FLAVORS = {
    # name: (ram MiB, vcpus, disk GB, extra specs)
    'clear.tiny': (128, 1, 1, {}),
    'clear.tiny.cc': (128, 1, 1,
                      {'trait:CUSTOM_CLEAR_CONTAINERS': 'required'}),
}
IMAGE = 'clear-busybox'
IMAGE_EXIT = 'clear-busybox-exit'
EXIT_COMMAND = ('init=/bin/sh -- -c '
                '"echo hello from a Clear Container; exit 3"')
WORKLOAD_LINE = 'disk-init: up on'


class Failure(Exception):
    """A step failed; ``log`` names the log file that explains it."""

    def __init__(self, msg, log=None):
        super().__init__(msg)
        self.log = log


def say(msg):
    print('[allinone %s] %s' % (time.strftime('%H:%M:%S'), msg), flush=True)


def log_path(name):
    return os.path.join(LOGS, '%s.log' % name)


def run(cmd, log=None, env=None, check=True, input=None):
    """Run a command, output appended to ``log`` (a service name)."""
    path = log_path(log or 'bootstrap')
    with open(path, 'a') as f:
        f.write('\n$ %s\n' % ' '.join(shlex.quote(c) for c in cmd))
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                              env=env, input=input,
                              text=True if input else None)
    if check and proc.returncode:
        raise Failure('%s exited %d' % (' '.join(cmd[:3]), proc.returncode),
                      path)
    return proc.returncode


def tail(path, lines=40):
    try:
        with open(path, 'rb') as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode('utf-8', 'replace').splitlines()
    except OSError:
        return ''
    return '\n'.join(data[-lines:])


def wait_for(predicate, timeout, what, log=None, interval=0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Failure:
            raise
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise Failure('timed out after %ds waiting for %s%s' % (
        timeout, what, ' (last error: %s: %s)' % (type(last).__name__, last)
        if last else ''), log)


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


# -- state -----------------------------------------------------------------

def load_state():
    try:
        with open(STATE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def save_state(state):
    tmp = STATE + '.tmp'
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
              'w') as f:
        json.dump(state, f, indent=2, sort_keys=True)
    os.replace(tmp, STATE)


def passwords():
    state = load_state()
    pw = state.get('passwords')
    if not pw:
        pw = {k: secrets.token_hex(12) for k in
              ('admin', 'db', 'glance', 'placement', 'neutron', 'nova')}
        state['passwords'] = pw
        save_state(state)
    return pw


# -- processes ---------------------------------------------------------------

def pidfile(name):
    return os.path.join(RUN, '%s.pid' % name)


def running_pid(name):
    """PID of our ``name`` if it is still the process we started."""
    try:
        with open(pidfile(name)) as f:
            pid, token = f.read().split(None, 1)
        pid = int(pid)
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    if fields[19] != token.strip():
        return None
    if fields[0] == 'Z':
        # exited; reap it when this process started it
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return None
    return pid


def start_process(name, cmd, env=None, cwd=None, user=None):
    if running_pid(name):
        return False
    if user:
        # a name, or (uid, gid)
        uid, gid = (user, user) if isinstance(user, str) else \
            (str(user[0]), str(user[1]))
        cmd = ['setpriv', '--reuid', uid, '--regid', gid,
               '--init-groups'] + cmd
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(log_path(name), 'a') as log:
        log.write('\n=== %s starting: %s\n' % (
            time.strftime('%Y-%m-%d %H:%M:%S'), ' '.join(cmd)))
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=full_env,
                                cwd=cwd, start_new_session=True)
    # the start time tells our process from a later one with the same PID
    with open('/proc/%d/stat' % proc.pid) as f:
        start = f.read().rsplit(')', 1)[1].split()[19]
    with open(pidfile(name), 'w') as f:
        f.write('%d %s\n' % (proc.pid, start))
    return True


def stop_process(name, timeout=20):
    pid = running_pid(name)
    if not pid:
        if os.path.exists(pidfile(name)):
            os.unlink(pidfile(name))
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.2)
    if _group_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.unlink(pidfile(name))
    return True


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # zombies of our own (none: children were not ours) do not count
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != 'Z':
            return True
    return False


def ensure_alive(name, seconds=0):
    """Fail with the service's log when it died (after ``seconds``)."""
    end = time.monotonic() + seconds
    while True:
        if not running_pid(name):
            raise Failure('%s exited' % name, log_path(name))
        if time.monotonic() >= end:
            return
        time.sleep(0.2)


# -- host networking ---------------------------------------------------------

def _ip(*args, ns=None, check=True):
    cmd = ['ip'] + (['-n', ns] if ns else []) + list(args)
    return run(cmd, 'network', check=check)


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


def provider_host_problem():
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
    if not any(a.get('local') == GATEWAY and a.get('prefixlen') ==
               int(SUBNET_CIDR.split('/')[1])
               for a in peer.get('addr_info', ())):
        return '%s has not %s/%s' % (PEER_IF, GATEWAY,
                                     SUBNET_CIDR.split('/')[1])
    lo = _ip_json('link', 'show', 'dev', 'lo', ns=PROVIDER_NETNS)
    if not lo or 'UP' not in lo[0].get('flags', ()):
        return 'lo is down in %s' % PROVIDER_NETNS
    return None


def provider_host_up():
    """The macvtap lower device and the provider namespace (idempotent).

    ``PHYS_IF`` (root namespace, up, no address) is the macvtap agent's
    physical interface for ``PHYSNET``; its veth peer ``PEER_IF`` lives in
    ``PROVIDER_NETNS`` with the gateway address.  Reused when it has that
    shape, made again when not.
    """
    problem = provider_host_problem()
    state = load_state()
    net = state.get('network') or {}
    if problem is None:
        created = net.get('host_created', False)
    else:
        if _ip_json('link', 'show', 'dev', PHYS_IF) or _netns_exists():
            say('provider network on the host: %s; making it again'
                % problem)
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
        _ip('addr', 'add', '%s/%s' % (GATEWAY, SUBNET_CIDR.split('/')[1]),
            'dev', PEER_IF, ns=PROVIDER_NETNS)
        _ip('link', 'set', 'dev', PEER_IF, 'up', ns=PROVIDER_NETNS)
        problem = provider_host_problem()
        if problem:
            raise Failure('provider network on the host: %s' % problem,
                          log_path('network'))
        created = True
    # The IPv6 gateway, added in place (hosts set up before dual stack keep
    # their veth and the guests' macvtaps on it); no duplicate detection.
    _ip('addr', 'replace', '%s/%s' % (GATEWAY6, SUBNET6_CIDR.split('/')[1]),
        'dev', PEER_IF, 'nodad', ns=PROVIDER_NETNS)
    state = load_state()
    state['network'] = dict(state.get('network') or {}, **network_names())
    state['network']['host_created'] = created
    save_state(state)


def network_names():
    return {'physnet': PHYSNET, 'physical_interface': PHYS_IF,
            'peer_interface': PEER_IF, 'netns': PROVIDER_NETNS,
            'network': NETWORK, 'subnet': SUBNET, 'cidr': SUBNET_CIDR,
            'gateway': GATEWAY, 'allocation_pool': list(POOL),
            'subnet6': SUBNET6, 'cidr6': SUBNET6_CIDR,
            'gateway6': GATEWAY6, 'macvtap_mode': 'bridge'}


def provider_host_down():
    """Remove the veth pair and namespace, if this tool made them."""
    state = load_state()
    net = state.get('network') or {}
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
        say('leaving %s and %s: guests still use it (%s)' % (
            PHYS_IF, PROVIDER_NETNS, ', '.join(users)))
        return
    if phys:
        _ip('link', 'del', 'dev', PHYS_IF)
    if _netns_exists():
        _ip('netns', 'del', PROVIDER_NETNS)
    net['host_created'] = False
    state['network'] = net
    save_state(state)
    say('removed %s and the namespace %s' % (PHYS_IF, PROVIDER_NETNS))


# -- the unprivileged nova-compute ------------------------------------------

def compute_user():
    """The system user nova-compute runs as (made once); (uid, gid).

    Member of ``libvirt`` (qemu:///system) and ``kvm`` (/dev/kvm), as
    Debian's nova-compute-kvm package makes its ``nova`` user.  A user of
    that name that exists already is reused, and only gets the groups.
    """
    import grp
    import pwd
    try:
        pw = pwd.getpwnam(COMPUTE_USER)
    except KeyError:
        say('creating the system user %s for nova-compute' % COMPUTE_USER)
        run(['useradd', '--system', '--user-group', '--home-dir',
             COMPUTE_STATE, '--no-create-home', '--shell',
             '/usr/sbin/nologin', '--comment', 'nova-compute (all-in-one)',
             COMPUTE_USER], 'bootstrap')
        pw = pwd.getpwnam(COMPUTE_USER)
    missing = [g for g in COMPUTE_GROUPS
               if COMPUTE_USER not in grp.getgrnam(g).gr_mem and
               grp.getgrnam(g).gr_gid != pw.pw_gid]
    if missing:
        run(['usermod', '--append', '--groups', ','.join(missing),
             COMPUTE_USER], 'bootstrap')
    return pw.pw_uid, pw.pw_gid


def _chown_if_root(path, uid, gid):
    st = os.lstat(path)
    if st.st_uid == 0 and not os.path.islink(path):
        os.chown(path, uid, gid, follow_symlinks=False)


def own_compute_dirs(uid, gid):
    """nova-compute's state, lock, instance and cache directories are the
    compute user's.

    Files left by a nova-compute that ran as root (an all-in-one made
    before it ran unprivileged) become the user's too, except what root
    keeps on purpose: virtlogd's console logs (read through nova's privsep
    daemon) and root filesystem trees a root daemon may be unpacking
    (``*.tree``, removed by that daemon).
    """
    for d in (COMPUTE_STATE, COMPUTE_LOCKS, INSTANCES):
        os.makedirs(d, exist_ok=True)
        os.chown(d, uid, gid)
    # libvirt's QEMU user must reach the instance disks
    for d in (AIO_HOME, DATA, COMPUTE_STATE, INSTANCES):
        os.chmod(d, 0o755)
    for top, dirs, files in os.walk(COMPUTE_STATE):
        dirs[:] = [d for d in dirs if not d.endswith('.tree')]
        for name in dirs + files:
            if name == 'console.log' or name.startswith(
                    'nova-clear-probe-'):
                continue
            try:
                _chown_if_root(os.path.join(top, name), uid, gid)
            except FileNotFoundError:
                pass
    # its log: the launcher opens it, nova-compute's output goes there
    path = log_path('nova-compute')
    with open(path, 'a'):
        pass
    os.chown(path, uid, gid)


def write_sudoers():
    """Let the compute user start its privsep daemons as root, and only
    those: the venv's privsep-helper with nova-compute's (root-owned)
    configuration file, one of PRIVSEP_CONTEXTS, and a socket under /tmp
    (oslo.privsep's ``tempfile.mkdtemp()``).  Checked with visudo before
    it is installed."""
    helper = os.path.join(BIN, 'privsep-helper')
    conf = os.path.join(ETC, 'nova', 'nova-cpu.conf')
    lines = ['# written by nova-clear tools/allinone: %s (nova-compute)'
             % COMPUTE_USER,
             '# may start these privsep daemons as root, nothing else',
             'Defaults:%s !requiretty' % COMPUTE_USER]
    for context in PRIVSEP_CONTEXTS.values():
        # sudo >= 1.9.10: an argument list between ^ and $ is a regular
        # expression; no other argument, and a fixed socket name
        lines.append(
            '%s ALL=(root) NOPASSWD: %s ^--config-file %s --privsep_context '
            '%s --privsep_sock_path /tmp/tmp[a-z0-9_]+/privsep[.]sock$'
            % (COMPUTE_USER, helper, conf.replace('.', '[.]'),
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
    if run(['visudo', '-c', '-q', '-f', tmp], 'bootstrap', check=False):
        os.unlink(tmp)
        raise Failure('the sudoers rule for %s does not parse' %
                      COMPUTE_USER, log_path('bootstrap'))
    os.replace(tmp, SUDOERS)
    say('sudoers: %s may run %s as root for its privsep daemons (%s)'
        % (COMPUTE_USER, helper, SUDOERS))


def as_compute_user(cmd):
    uid, gid = compute_user()
    return ['setpriv', '--reuid', str(uid), '--regid', str(gid),
            '--init-groups'] + cmd


def libvirt_direct():
    """Whether the compute user can use qemu:///system as it is.

    Not on hosts without the D-Bus system bus (no systemd): libvirtd's
    polkit check, which admits the libvirt group, cannot run there.
    """
    proc = subprocess.run(
        as_compute_user(['virsh', '-c', 'qemu:///system', 'version']),
        capture_output=True, text=True, cwd='/', timeout=60)
    return proc.returncode == 0


def libvirt_uri():
    """The libvirt URI of nova-compute: qemu:///system, or the group
    socket of tools/libvirt_sock_proxy.py where polkit cannot admit the
    libvirt group (recorded in aio.json: ``libvirt_proxy``)."""
    direct = libvirt_direct()
    state = load_state()
    if state.get('libvirt_proxy') != (not direct):
        state['libvirt_proxy'] = not direct
        save_state(state)
    if direct:
        return 'qemu:///system'
    return 'qemu+unix:///system?socket=%s' % LIBVIRT_PROXY_SOCK


def start_libvirt_proxy():
    if not load_state().get('libvirt_proxy'):
        stop_process('libvirt-proxy')
        return
    import grp
    d = os.path.dirname(LIBVIRT_PROXY_SOCK)
    os.makedirs(d, exist_ok=True)
    os.chown(d, 0, grp.getgrnam('libvirt').gr_gid)
    os.chmod(d, 0o750)
    start_process('libvirt-proxy', [
        sys.executable, os.path.join(ROOT, 'tools', 'libvirt_sock_proxy.py'),
        LIBVIRT_PROXY_SOCK, 'libvirt', LIBVIRT_SOCK])
    wait_for(lambda: ensure_alive('libvirt-proxy') or
             os.path.exists(LIBVIRT_PROXY_SOCK), 30,
             'the libvirt socket proxy', log_path('libvirt-proxy'))


# -- configuration -----------------------------------------------------------

def write_ini(path, sections):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lines = []
    for section, values in sections.items():
        lines.append('[%s]' % section)
        for k, v in values.items():
            lines.append('%s = %s' % (k, v))
        lines.append('')
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640),
              'w') as f:
        f.write('\n'.join(lines))


def ks_auth(user, password):
    return {'auth_type': 'password',
            'auth_url': 'http://%s:5000/v3' % HOST,
            'username': user, 'password': password,
            'user_domain_name': 'Default', 'project_name': 'service',
            'project_domain_name': 'Default', 'region_name': REGION}


def authtoken(user, password):
    d = ks_auth(user, password)
    d['www_authenticate_uri'] = d['auth_url']
    d.pop('region_name')
    return d


def mysql_url(db, pw):
    return 'mysql+pymysql://aio:%s@%s/%s?charset=utf8' % (pw['db'], HOST, db)


def sqlite_url(name):
    return 'sqlite:///%s' % os.path.join(DATA, '%s.sqlite' % name)


def rabbit_url():
    return 'rabbit://guest:guest@%s:5672/' % HOST


def _driver_digest():
    """Digest of the nova-clear code installed in the venv."""
    import nova_clear
    top = os.path.dirname(os.path.abspath(nova_clear.__file__))
    if not top.startswith(VENV):
        # run from the checkout: ask the venv's interpreter
        top = subprocess.run(
            [os.path.join(BIN, 'python'), '-c',
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


def _etc_digests():
    digests = {}
    for top, _dirs, files in os.walk(ETC):
        for f in files:
            path = os.path.join(top, f)
            with open(path, 'rb') as fh:
                digests[path] = hashlib.sha256(fh.read()).hexdigest()
    return digests


def write_configs(pw):
    """Write every service's configuration; returns the changed files."""
    before = _etc_digests()
    _write_configs(pw)
    after = _etc_digests()
    return {p for p in after if before.get(p) != after[p]}


def _write_configs(pw):
    lock = os.path.join(DATA, 'locks')
    write_ini(os.path.join(ETC, 'keystone', 'keystone.conf'), {
        'DEFAULT': {'log_file': log_path('keystone-app')},
        'database': {'connection': sqlite_url('keystone')},
        'token': {'provider': 'fernet'},
        'fernet_tokens': {'key_repository':
                          os.path.join(ETC, 'keystone', 'fernet-keys')},
        'credential': {'key_repository':
                       os.path.join(ETC, 'keystone', 'credential-keys')},
        # a test cloud: bcrypt's default cost makes each token take ~1 s
        'identity': {'password_hash_rounds': '4'},
    })
    glance_dir = os.path.join(ETC, 'glance')
    write_ini(os.path.join(glance_dir, 'glance-api.conf'), {
        'DEFAULT': {'log_file': log_path('glance-app'),
                    'enabled_backends': 'fs:file',
                    'bind_host': HOST},
        'database': {'connection': sqlite_url('glance')},
        'glance_store': {'default_backend': 'fs'},
        'fs': {'filesystem_store_datadir': os.path.join(DATA, 'images')},
        'os_glance_staging_store': {'filesystem_store_datadir':
                                    os.path.join(DATA, 'glance-staging')},
        'os_glance_tasks_store': {'filesystem_store_datadir':
                                  os.path.join(DATA, 'glance-tasks')},
        'keystone_authtoken': authtoken('glance', pw['glance']),
        'paste_deploy': {'flavor': 'keystone'},
        'oslo_concurrency': {'lock_path': lock},
    })
    shutil.copy(os.path.join(VENV, 'etc', 'glance', 'glance-api-paste.ini'),
                glance_dir)
    write_ini(os.path.join(ETC, 'placement', 'placement.conf'), {
        'DEFAULT': {'log_file': log_path('placement-app')},
        # MariaDB: concurrent allocation writes lock a SQLite file
        'placement_database': {'connection': mysql_url('placement', pw)},
        'api': {'auth_strategy': 'keystone'},
        'keystone_authtoken': authtoken('placement', pw['placement']),
    })
    neutron_dir = os.path.join(ETC, 'neutron')
    write_ini(os.path.join(neutron_dir, 'neutron.conf'), {
        'DEFAULT': {'log_file': log_path('neutron-app'),
                    'core_plugin': 'ml2', 'service_plugins': '',
                    'auth_strategy': 'keystone',
                    'transport_url': rabbit_url(),
                    # port status changes (the macvtap agent reporting
                    # a guest's device up) become nova's
                    # network-vif-plugged events, sent in batches every
                    # send_events_interval seconds (default 2, min 1)
                    'notify_nova_on_port_status_changes': 'true',
                    'notify_nova_on_port_data_changes': 'true',
                    'send_events_interval': '1',
                    # neutron-rpc-server: one worker, which also takes the
                    # agent's state reports (no extra process for them)
                    'rpc_workers': '1', 'rpc_state_report_workers': '0',
                    'api_paste_config':
                        os.path.join(neutron_dir, 'api-paste.ini'),
                    'state_path': os.path.join(DATA, 'neutron')},
        'database': {'connection': mysql_url('neutron', pw)},
        'keystone_authtoken': authtoken('neutron', pw['neutron']),
        # the events go to nova's API as the nova service user
        'nova': dict(ks_auth('nova', pw['nova']), endpoint_type='public'),
        'oslo_concurrency': {'lock_path': lock},
        'agent': {'root_helper': ''},
    })
    write_ini(os.path.join(neutron_dir, 'plugins', 'ml2', 'ml2_conf.ini'), {
        # flat provider networks bound by the macvtap agent; "local"
        # stays the project network type (such ports do not bind)
        'ml2': {'type_drivers': 'flat,local', 'tenant_network_types': 'local',
                'mechanism_drivers': 'macvtap', 'extension_drivers': ''},
        # any physical network name is accepted: one that no agent maps
        # makes a port binding fail (the integration tests provoke that)
        'ml2_type_flat': {'flat_networks': '*'},
    })
    # the agent runs as root, without sudo: privsep's helper is started
    # directly, for each of neutron's privsep contexts
    privsep = '%s --config-file %s --config-file %s' % (
        os.path.join(BIN, 'privsep-helper'),
        os.path.join(neutron_dir, 'neutron.conf'),
        os.path.join(neutron_dir, 'plugins', 'ml2', 'macvtap_agent.ini'))
    agent_ini = {
        'DEFAULT': {'host': socket.gethostname()},
        'agent': {'polling_interval': '1', 'report_interval': '10'},
        'macvtap': {'physical_interface_mappings':
                    '%s:%s' % (PHYSNET, PHYS_IF)},
        # the only firewall driver the macvtap agent accepts: security
        # groups are not enforced with this backend
        'securitygroup': {'firewall_driver': 'noop'},
    }
    for section in ('privsep', 'privsep_link', 'privsep_namespace',
                    'privsep_conntrack', 'privsep_dhcp_release',
                    'privsep_ovs_vsctl'):
        agent_ini[section] = {'helper_command': privsep}
    write_ini(os.path.join(neutron_dir, 'plugins', 'ml2',
                           'macvtap_agent.ini'), agent_ini)
    shutil.copy(os.path.join(VENV, 'etc', 'neutron', 'api-paste.ini'),
                neutron_dir)
    nova_dir = os.path.join(ETC, 'nova')
    common = {
        'DEFAULT': {'transport_url': rabbit_url(),
                    'state_path': os.path.join(DATA, 'nova'),
                    'instances_path': INSTANCES,
                    'my_ip': HOST, 'host': socket.gethostname(),
                    'use_neutron': 'true'},
        'api': {'auth_strategy': 'keystone'},
        'keystone_authtoken': authtoken('nova', pw['nova']),
        'service_user': dict(ks_auth('nova', pw['nova']),
                             send_service_user_token='true'),
        'placement': ks_auth('placement', pw['placement']),
        'neutron': ks_auth('neutron', pw['neutron']),
        'glance': {'api_servers': 'http://%s:9292' % HOST},
        'oslo_concurrency': {'lock_path': lock},
        # one host: a failed build has nowhere else to go, and the
        # server's fault then names the real error
        'scheduler': {'workers': '1', 'max_attempts': '1'},
        'conductor': {'workers': '1'},
        'notifications': {'notification_format': 'unversioned'},
        'oslo_messaging_notifications': {'driver': 'noop'},
    }
    common['DEFAULT'].pop('use_neutron')
    api = {k: dict(v) for k, v in common.items()}
    api['DEFAULT']['log_file'] = log_path('nova-api-app')
    api['api_database'] = {'connection': mysql_url('nova_api', pw)}
    api['database'] = {'connection': mysql_url('nova_cell0', pw)}
    write_ini(os.path.join(nova_dir, 'nova.conf'), api)
    shutil.copy(os.path.join(VENV, 'etc', 'nova', 'api-paste.ini'), nova_dir)
    # conductor/scheduler: the API database and cell1
    svc = {k: dict(v) for k, v in api.items()}
    svc['DEFAULT'].pop('log_file')
    svc['database'] = {'connection': mysql_url('nova', pw)}
    write_ini(os.path.join(nova_dir, 'nova-services.conf'), svc)
    # nova-compute: no database settings at all
    cpu = {k: dict(v) for k, v in common.items()
           if k not in ('keystone_authtoken', 'scheduler', 'conductor')}
    cpu['compute'] = {'max_concurrent_builds': '10'}
    # its own lock directory (the others' services run as root)
    cpu['oslo_concurrency'] = {'lock_path': COMPUTE_LOCKS}
    # a guest with ports starts paused until neutron reports them plugged
    # (network-vif-plugged); no event in time fails the build
    cpu['DEFAULT']['vif_plugging_is_fatal'] = 'true'
    cpu['DEFAULT']['vif_plugging_timeout'] = '60'
    # The driver core reports pci_passthrough_devices=None, on which the
    # resource tracker's first update after every start fails; it succeeds
    # from the next periodic update on.  Keep that wait short until the
    # driver reports '[]'.
    cpu['DEFAULT']['update_resources_interval'] = '20'
    # "Final resource view" (debug) after each successful update tells
    # when the resource tracker can claim: the bring-up waits for it
    from oslo_log import _options as log_options
    cpu['DEFAULT']['default_log_levels'] = ','.join(
        list(log_options.DEFAULT_LOG_LEVELS) +
        ['nova.compute.resource_tracker=DEBUG'])
    cpu_path = os.path.join(nova_dir, 'nova-cpu.conf')
    write_ini(cpu_path, cpu)
    # the driver's own settings: the code the devstack plugin calls too
    # nova-compute runs as COMPUTE_USER; its privsep daemons (nova's,
    # nova-clear's, os-vif's) start as devstack starts them, through sudo,
    # with the venv's privsep-helper and this file (the sudoers rule of
    # write_sudoers allows exactly these commands)
    helper = 'sudo %s --config-file %s' % (
        os.path.join(BIN, 'privsep-helper'), cpu_path)
    nova_conf.configure(cpu_path, {
        'virt_type': VIRT_TYPE,
        'kvm_probe_timeout': KVM_PROBE_TIMEOUT,
        'assets_path': ASSETS,
        'connection_uri': libvirt_uri(),
    }, {section: {'helper_command': helper}
        for section in PRIVSEP_CONTEXTS})
    # readable by nova-compute, writable only by root: the privsep
    # daemons read it as root
    uid, gid = compute_user()
    os.chown(cpu_path, 0, gid)
    os.chmod(cpu_path, 0o640)
    write_clouds(pw)


def write_clouds(pw):
    auth = {'auth_url': 'http://%s:5000/v3' % HOST, 'username': 'admin',
            'password': pw['admin'], 'project_name': 'admin',
            'user_domain_name': 'Default', 'project_domain_name': 'Default'}
    clouds = {'clouds': {'nova-clear-aio': {
        'auth': auth, 'region_name': REGION, 'identity_api_version': 3,
        'compute_api_version': COMPUTE_MICROVERSION}}}
    path = os.path.join(AIO_HOME, 'clouds.yaml')
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
              'w') as f:
        json.dump(clouds, f, indent=2)  # JSON is YAML
    rc = os.path.join(AIO_HOME, 'admin-openrc')
    with open(os.open(rc, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
              'w') as f:
        f.write(textwrap.dedent('''\
            export OS_CLOUD=nova-clear-aio
            export OS_CLIENT_CONFIG_FILE=%s
            export PATH=%s:$PATH
            ''' % (path, BIN)))


def cli_env():
    env = dict(os.environ)
    env['OS_CLOUD'] = 'nova-clear-aio'
    env['OS_CLIENT_CONFIG_FILE'] = os.path.join(AIO_HOME, 'clouds.yaml')
    return env


# -- services -------------------------------------------------------------

def uwsgi(name, env):
    # SQLite-backed apps get one process: two writing one SQLite file at
    # once see "database is locked"
    processes, threads = ('1', '4') if name in SQLITE_APPS else ('2', '1')
    start_process(name, [
        os.path.join(BIN, 'uwsgi'), '--http-socket',
        '%s:%d' % (HOST, PORTS[name]),
        # uWSGI's http-socket does no keep-alive: tell clients so
        '--add-header', 'Connection: close',
        '--module', WSGI[name], '--master', '--processes', processes,
        '--threads', threads, '--enable-threads', '--lazy-apps',
        '--die-on-term', '--need-app', '--buffer-size', '65535',
        '--thunder-lock', '--hook-master-start',
        'unix_signal:15 gracefully_kill_them_all',
        '--virtualenv', VENV, '--procname-prefix', 'aio-%s ' % name],
        env=env)


def wait_http(name, path, timeout=120):
    import urllib.error
    import urllib.request

    def ok():
        ensure_alive(name)
        try:
            urllib.request.urlopen('http://%s:%d%s' % (HOST, PORTS[name],
                                                       path), timeout=5)
        except urllib.error.HTTPError as e:
            return e.code < 500
        return True
    try:
        wait_for(ok, timeout, '%s on port %d' % (name, PORTS[name]),
                 log_path(name))
    except Failure as e:
        app = log_path(name + '-app')
        if e.log == log_path(name) and os.path.exists(app) and \
                'ERROR' in tail(app, 60):
            e.log = app
        raise


def check_port_free(name):
    if port_open(PORTS[name]):
        raise Failure('port %d (for %s) is taken by a process this tool '
                      'did not start; stop it or free the port'
                      % (PORTS[name], name))


def start_mariadb(pw):
    if not running_pid('mariadb'):
        check_port_free('mariadb')
        os.makedirs('/run/mysqld', exist_ok=True)
        shutil.chown('/run/mysqld', 'mysql', 'mysql')
        if not os.path.isdir('/var/lib/mysql/mysql'):
            run(['mariadb-install-db', '--user=mysql',
                 '--datadir=/var/lib/mysql'], 'mariadb')
        start_process('mariadb', [
            'mariadbd', '--user=mysql', '--bind-address=%s' % HOST,
            '--port=3306', '--socket=%s' % MYSQL_SOCK,
            '--skip-log-error', '--max-connections=500',
            '--innodb-flush-log-at-trx-commit=2',
            '--innodb-buffer-pool-size=128M'])
    wait_for(lambda: ensure_alive('mariadb') or run(
        ['mariadb-admin', '--socket=%s' % MYSQL_SOCK, 'ping'], 'mariadb',
        check=False) == 0, 60, 'MariaDB', log_path('mariadb'))
    sql = ["CREATE USER IF NOT EXISTS 'aio'@'localhost' IDENTIFIED BY '%s'"
           % pw['db'],
           "CREATE USER IF NOT EXISTS 'aio'@'127.0.0.1' IDENTIFIED BY '%s'"
           % pw['db'],
           "ALTER USER 'aio'@'localhost' IDENTIFIED BY '%s'" % pw['db'],
           "ALTER USER 'aio'@'127.0.0.1' IDENTIFIED BY '%s'" % pw['db']]
    for db in ('nova_api', 'nova', 'nova_cell0', 'neutron', 'placement'):
        sql.append('CREATE DATABASE IF NOT EXISTS %s CHARACTER SET utf8' % db)
        for h in ('localhost', '127.0.0.1'):
            sql.append("GRANT ALL PRIVILEGES ON %s.* TO 'aio'@'%s'" % (db, h))
    run(['mariadb', '--socket=%s' % MYSQL_SOCK],
        'mariadb', input=';\n'.join(sql) + ';\n')


def start_rabbitmq():
    if not running_pid('epmd'):
        start_process('epmd', ['epmd', '-address', HOST], user='rabbitmq')
    if not running_pid('rabbitmq'):
        check_port_free('rabbitmq')
        start_process('rabbitmq', ['/usr/lib/rabbitmq/bin/rabbitmq-server'],
                      user='rabbitmq', cwd='/var/lib/rabbitmq', env={
                          'HOME': '/var/lib/rabbitmq',
                          'RABBITMQ_NODENAME': 'rabbit@localhost',
                          'RABBITMQ_NODE_IP_ADDRESS': HOST,
                          'RABBITMQ_LOGS': '-',
                          'ERL_EPMD_ADDRESS': HOST})


def wait_rabbitmq():
    wait_for(lambda: ensure_alive('rabbitmq') or port_open(5672), 120,
             'RabbitMQ on port 5672', log_path('rabbitmq'))


def keystone_up(pw):
    env = {'OS_KEYSTONE_CONFIG_FILES':
           os.path.join(ETC, 'keystone', 'keystone.conf')}
    manage = [os.path.join(BIN, 'keystone-manage'), '--config-file',
              env['OS_KEYSTONE_CONFIG_FILES']]
    state = load_state()
    if not state.get('keystone_db'):
        run(manage + ['db_sync'], 'keystone')
        for what in ('fernet_setup', 'credential_setup'):
            run(manage + [what, '--keystone-user', 'root',
                          '--keystone-group', 'root'], 'keystone')
        url = 'http://%s:5000/v3' % HOST
        run(manage + ['bootstrap', '--bootstrap-password', pw['admin'],
                      '--bootstrap-admin-url', url,
                      '--bootstrap-public-url', url,
                      '--bootstrap-internal-url', url,
                      '--bootstrap-region-id', REGION], 'keystone')
        state = load_state()
        state['keystone_db'] = True
        save_state(state)
    if not running_pid('keystone'):
        check_port_free('keystone')
    uwsgi('keystone', env)


def connection():
    import openstack
    pw = passwords()
    return openstack.connect(
        auth_url='http://%s:5000/v3' % HOST, username='admin',
        password=pw['admin'], project_name='admin',
        user_domain_name='Default', project_domain_name='Default',
        region_name=REGION, compute_api_version=COMPUTE_MICROVERSION,
        identity_api_version='3')


def keystone_catalog(conn, pw):
    ident = conn.identity
    service_project = ident.find_project('service') or \
        ident.create_project(name='service', domain_id='default',
                             description='OpenStack services')
    admin_role = ident.find_role('admin')
    service_role = ident.find_role('service') or \
        ident.create_role(name='service')
    for user in ('glance', 'placement', 'neutron', 'nova'):
        u = ident.find_user(user, domain_id='default')
        if u is None:
            u = ident.create_user(name=user, password=pw[user],
                                  domain_id='default')
        # an existing user keeps its password: changing it would revoke
        # the tokens the running services hold
        for role in (admin_role, service_role):
            ident.assign_project_role_to_user(service_project, u, role)
    catalog = [('glance', 'image', 'http://%s:9292' % HOST),
               ('placement', 'placement', 'http://%s:8778' % HOST),
               ('neutron', 'network', 'http://%s:9696' % HOST),
               ('nova', 'compute', 'http://%s:8774/v2.1' % HOST)]
    for name, stype, url in catalog:
        svc = ident.find_service(name)
        if svc is None:
            svc = ident.create_service(name=name, type=stype)
        have = {e.interface: e for e in ident.endpoints(service_id=svc.id)}
        for interface in ('public', 'internal', 'admin'):
            e = have.get(interface)
            if e is None:
                ident.create_endpoint(service_id=svc.id, interface=interface,
                                      url=url, region_id=REGION)
            elif e.url != url:
                ident.update_endpoint(e, url=url)


def services_up(pw):
    """Everything up to a running nova-compute in cell1."""
    t0 = time.monotonic()
    for d in (ETC, DATA, LOGS, RUN, os.path.join(DATA, 'locks'),
              os.path.join(DATA, 'images')):
        os.makedirs(d, exist_ok=True)
    if os.environ.get('AIO_VENV_RECREATED'):
        # they run from the venv that was just replaced
        for name in reversed(SERVICES):
            if stop_process(name):
                say('the venv was made again: stopped %s' % name)
    uid, gid = compute_user()
    own_compute_dirs(uid, gid)
    changed = write_configs(pw)
    write_sudoers()
    # new driver code (tools/setup-host reinstalled nova-clear) needs a
    # new nova-compute too
    code = _driver_digest()
    state = load_state()
    if state.get('driver_digest') != code:
        changed.add(os.path.join(ETC, 'nova', 'nova-cpu.conf'))
        state['driver_digest'] = code
        save_state(state)
    # a running service whose configuration changed is started again
    for name, files in CONFIG_FILES.items():
        if running_pid(name) and changed & {os.path.join(ETC, f)
                                            for f in files}:
            say('configuration of %s changed: restarting it' % name)
            stop_process(name)
    # a nova-compute of another user (root, before it ran unprivileged)
    pid = running_pid('nova-compute')
    if pid and os.stat('/proc/%d' % pid).st_uid != uid:
        say('nova-compute runs as uid %d, not as %s: restarting it'
            % (os.stat('/proc/%d' % pid).st_uid, COMPUTE_USER))
        stop_process('nova-compute')
    say('provider network on the host: %s (%s) <-> %s in netns %s, %s'
        % (PHYS_IF, PHYSNET, PEER_IF, PROVIDER_NETNS, GATEWAY))
    provider_host_up()
    say('MariaDB and RabbitMQ')
    start_rabbitmq()          # slow to boot: overlaps with the rest
    start_mariadb(pw)
    say('Keystone')
    keystone_up(pw)
    wait_http('keystone', '/v3')
    keystone_catalog(connection(), pw)
    # a new token, whose catalog has the endpoints just created
    conn = connection()
    say('Glance (SQLite), Placement')
    genv = {'OS_GLANCE_CONFIG_DIR': os.path.join(ETC, 'glance')}
    penv = {'OS_PLACEMENT_CONFIG_DIR': os.path.join(ETC, 'placement')}
    nenv = {'OS_NEUTRON_CONFIG_DIR': os.path.join(ETC, 'neutron')}
    glance_conf = os.path.join(ETC, 'glance', 'glance-api.conf')
    placement_conf = os.path.join(ETC, 'placement', 'placement.conf')
    neutron_confs = ['--config-file', os.path.join(ETC, 'neutron',
                                                   'neutron.conf'),
                     '--config-file', os.path.join(ETC, 'neutron', 'plugins',
                                                   'ml2', 'ml2_conf.ini')]
    state = load_state()
    if not state.get('glance_db'):
        run([os.path.join(BIN, 'glance-manage'), '--config-file',
             glance_conf, 'db_sync'], 'glance')
    if not state.get('placement_db_mysql'):
        run([os.path.join(BIN, 'placement-manage'), '--config-file',
             placement_conf, 'db', 'sync'], 'placement')
    for name, env in (('glance', genv), ('placement', penv)):
        if not running_pid(name):
            check_port_free(name)
        uwsgi(name, env)
    say('Neutron API (ML2/macvtap, MariaDB)')
    if not state.get('neutron_db'):
        run([os.path.join(BIN, 'neutron-db-manage')] + neutron_confs +
            ['upgrade', 'heads'], 'neutron')
    if not running_pid('neutron'):
        check_port_free('neutron')
    uwsgi('neutron', nenv)
    say('Nova databases and cells v2')
    nova_conf_path = os.path.join(ETC, 'nova', 'nova.conf')
    svc_conf = os.path.join(ETC, 'nova', 'nova-services.conf')
    manage = [os.path.join(BIN, 'nova-manage'), '--config-file',
              svc_conf]
    if not state.get('nova_db'):
        run(manage + ['api_db', 'sync'], 'nova-manage')
        run(manage + ['cell_v2', 'map_cell0', '--database_connection',
                      mysql_url('nova_cell0', pw)], 'nova-manage')
        # exit code 2: the cell exists already
        rc = run(manage + ['cell_v2', 'create_cell', '--name', 'cell1',
                           '--verbose'], 'nova-manage', check=False)
        if rc not in (0, 2):
            raise Failure('nova-manage cell_v2 create_cell exited %d' % rc,
                          log_path('nova-manage'))
        run(manage + ['db', 'sync'], 'nova-manage')
    state.update(glance_db=True, placement_db_mysql=True, neutron_db=True,
                 nova_db=True)
    save_state(state)
    say('Nova API, conductor, scheduler')
    if not running_pid('nova-api'):
        check_port_free('nova-api')
    # nova reads <dir>/api-paste.ini and <dir>/nova.conf
    uwsgi('nova-api', {'OS_NOVA_CONFIG_DIR': os.path.join(ETC, 'nova')})
    wait_rabbitmq()
    for name in ('nova-conductor', 'nova-scheduler'):
        start_process(name, [os.path.join(BIN, name), '--config-file',
                             svc_conf])
    say('neutron-rpc-server, neutron-macvtap-agent (%s:%s)'
        % (PHYSNET, PHYS_IF))
    agent_started = start_neutron_agents(neutron_confs)
    assets()
    start_libvirt_proxy()
    say('nova-compute as %s (compute_driver = clear.ClearDriver, '
        'virt_type=%s)' % (COMPUTE_USER, VIRT_TYPE))
    compute_started = start_compute()
    for name, path in (('glance', '/'), ('placement', '/'),
                       ('neutron', '/'), ('nova-api', '/')):
        wait_http(name, path)
    neutron_warm_up(conn)
    wait_macvtap_agent(conn, agent_started)
    provider_network(conn)
    wait_compute(conn, manage, compute_started)
    del nova_conf_path
    say('services up in %.1fs' % (time.monotonic() - t0))
    return conn


def start_neutron_agents(neutron_confs):
    """neutron-rpc-server and the macvtap agent; returns the agent's start.

    The API under uWSGI serves no RPC: agents report their state and their
    devices to neutron-rpc-server (same configuration files).  The start
    is (UTC start time, monotonic time), or None when the agent was
    running already.
    """
    start_process('neutron-rpc-server', [
        os.path.join(BIN, 'neutron-rpc-server')] + neutron_confs +
        ['--log-file', log_path('neutron-rpc-server')])
    started = datetime.datetime.now(datetime.timezone.utc).replace(
        tzinfo=None, microsecond=0)
    t0 = time.monotonic()
    neutron_dir = os.path.join(ETC, 'neutron')
    # tools/macvtap_agent.py: neutron-macvtap-agent, its privsep fixed
    if not start_process('neutron-macvtap-agent', [
            os.path.join(BIN, 'python'),
            os.path.join(ROOT, 'tools', 'macvtap_agent.py'),
            '--config-file', os.path.join(neutron_dir, 'neutron.conf'),
            '--config-file', os.path.join(neutron_dir, 'plugins', 'ml2',
                                          'macvtap_agent.ini'),
            '--log-file', log_path('neutron-macvtap-agent')]):
        return None
    return started, t0


def macvtap_agents(conn):
    return list(conn.network.agents(host=socket.gethostname(),
                                    agent_type=MACVTAP_AGENT_TYPE))


def wait_macvtap_agent(conn, start, timeout=180):
    """The macvtap agent of this host is alive (this process of it)."""
    def alive():
        ensure_alive('neutron-rpc-server')
        ensure_alive('neutron-macvtap-agent')
        for agent in macvtap_agents(conn):
            if not agent.is_alive:
                continue
            if start is None:
                return True
            begun = datetime.datetime.fromisoformat(
                str(agent.started_at).replace('Z', '')[:19])
            if begun >= start[0]:
                return True
        return False
    wait_for(alive, timeout, 'the macvtap agent of %s to be alive'
             % socket.gethostname(), log_path('neutron-macvtap-agent'),
             interval=0.5)
    if start is not None:
        say('macvtap agent alive %.1fs after its start'
            % (time.monotonic() - start[1]))


def provider_network(conn):
    """The shared flat provider network and its subnet (idempotent)."""
    net_api = conn.network
    net = net_api.find_network(NETWORK)
    if net is None:
        net = net_api.create_network(
            name=NETWORK, shared=True, provider_network_type='flat',
            provider_physical_network=PHYSNET)
        say('created network %s (flat, physnet %s, shared)'
            % (NETWORK, PHYSNET))
    if (net.provider_network_type, net.provider_physical_network) != \
            ('flat', PHYSNET):
        raise Failure('network %s exists as %s/%s, not flat/%s: delete it '
                      'and start again' % (
                          NETWORK, net.provider_network_type,
                          net.provider_physical_network, PHYSNET))
    if not net.is_shared:
        net = net_api.update_network(net, shared=True)
    want = {'gateway_ip': GATEWAY, 'is_dhcp_enabled': False,
            'dns_nameservers': [GATEWAY],
            'allocation_pools': [{'start': POOL[0], 'end': POOL[1]}]}
    sub = net_api.find_subnet(SUBNET, network_id=net.id)
    if sub is None:
        sub = net_api.create_subnet(
            name=SUBNET, network_id=net.id, ip_version=4, cidr=SUBNET_CIDR,
            **want)
        say('created subnet %s %s, gateway %s, pool %s-%s, no DHCP'
            % (SUBNET, SUBNET_CIDR, GATEWAY, POOL[0], POOL[1]))
    elif sub.cidr != SUBNET_CIDR:
        raise Failure('subnet %s exists as %s, not %s: delete it and start '
                      'again' % (SUBNET, sub.cidr, SUBNET_CIDR))
    else:
        changes = {k: v for k, v in want.items() if getattr(sub, k) != v}
        if changes:
            sub = net_api.update_subnet(sub, **changes)
    sub6 = net_api.find_subnet(SUBNET6, network_id=net.id)
    if sub6 is None:
        sub6 = net_api.create_subnet(
            name=SUBNET6, network_id=net.id, ip_version=6,
            cidr=SUBNET6_CIDR, gateway_ip=GATEWAY6, is_dhcp_enabled=False)
        say('created subnet %s %s, gateway %s, no DHCP, no RA'
            % (SUBNET6, SUBNET6_CIDR, GATEWAY6))
    elif sub6.cidr != SUBNET6_CIDR:
        raise Failure('subnet %s exists as %s, not %s: delete it and start '
                      'again' % (SUBNET6, sub6.cidr, SUBNET6_CIDR))
    state = load_state()
    state['network'] = dict(state.get('network') or {}, **network_names())
    state['network'].update(network_id=net.id, subnet_id=sub.id,
                            subnet6_id=sub6.id)
    save_state(state)


def start_compute():
    """Start nova-compute; returns (UTC start time, its log's offset)."""
    started = datetime.datetime.now(datetime.timezone.utc).replace(
        tzinfo=None, microsecond=0)
    try:
        offset = os.path.getsize(log_path('nova-compute'))
    except OSError:
        offset = 0
    # unprivileged, with the user's groups (libvirt, kvm)
    uid, gid = compute_user()
    start_process('nova-compute', [
        os.path.join(BIN, 'nova-compute'), '--config-file',
        os.path.join(ETC, 'nova', 'nova-cpu.conf')],
        user=(uid, gid), cwd=COMPUTE_STATE,
        env={'HOME': COMPUTE_STATE, 'USER': COMPUTE_USER,
             'LOGNAME': COMPUTE_USER, 'TMPDIR': '/tmp'})
    return started, offset


def _log_since(name, offset):
    try:
        with open(log_path(name), 'rb') as f:
            f.seek(offset)
            return f.read().decode('utf-8', 'replace')
    except OSError:
        return ''


def wait_compute_up(conn, start, timeout=240):
    """nova-compute reports up; restarted when foreign domains stopped it.

    The driver counts every domain carrying nova-clear's metadata as its
    own.  A first start refuses to run while such domains exist (nova's
    "My hypervisor has existing instances" check), e.g. while the
    functional tests run on the same libvirtd: wait and try again.
    """
    host = socket.gethostname()
    deadline = time.monotonic() + timeout
    started, offset = start

    def compute_up():
        if not running_pid('nova-compute'):
            if 'appear to be a new service' in tail(
                    log_path('nova-compute'), 30) and \
                    time.monotonic() < deadline - 30:
                say('nova-compute saw nova-clear domains it does not know '
                    '(another user of this libvirtd?); starting it again')
                time.sleep(5)
                start_compute()
                return False
            ensure_alive('nova-compute')
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
            return 'Final resource view' in _log_since('nova-compute',
                                                       offset)
        return False
    wait_for(compute_up, timeout, 'nova-compute to report up and its '
             'first resource update', log_path('nova-compute'), interval=1)


def neutron_warm_up(conn):
    # A fresh neutron API process answered its first port listing with a
    # 500 until another query ran; make both workers see a few queries.
    def ok():
        for _ in range(4):
            list(conn.network.networks())
            list(conn.network.security_groups())
            list(conn.network.ports())
        return True
    wait_for(ok, 60, 'the Neutron API to answer', log_path('neutron-app'),
             interval=1)


def wait_compute(conn, manage, started):
    wait_compute_up(conn, started)
    run(manage + ['cell_v2', 'discover_hosts', '--verbose'], 'nova-manage')

    def hypervisor():
        ensure_alive('nova-compute')
        return any(True for _ in conn.placement.resource_providers())
    wait_for(hypervisor, 120, 'the compute node in placement',
             log_path('nova-compute'), interval=1)


def assets():
    from nova_clear.guest import assets as guest_assets
    # Rebuilt when the installed nova-clear carries another agent (the
    # guest side of what the driver passes, e.g. network configuration);
    # a minimal kernel already there (the driver prefers it) is kept and
    # its initramfs rebuilt too (the kernel itself is cached).
    minimal = os.path.join(ASSETS, guest_assets.MINIMAL_SUBDIR)
    has_minimal = os.path.exists(os.path.join(minimal, 'manifest.json'))
    if guest_assets.agent_is_current(ASSETS) and (
            not has_minimal or guest_assets.agent_is_current(minimal)):
        return
    say('building the guest assets into %s%s' % (
        ASSETS, ' (built with another agent)'
        if os.path.exists(os.path.join(ASSETS, 'manifest.json')) else ''))
    run([os.path.join(BIN, 'nova-clear-build-guest'), '--dest', ASSETS] +
        (['--minimal-kernel'] if has_minimal else []), 'build-guest')


# -- images and flavors -------------------------------------------------------

def disk_image():
    from nova_clear import samples
    return samples.disk_image('fs')


def images_and_flavors(conn):
    ids = {}
    path = None
    for name, props in ((IMAGE, {}),
                        (IMAGE_EXIT, {'os_command_line': EXIT_COMMAND})):
        img = None
        for i in conn.image.images(name=name):
            if i.status == 'active':
                img = i
            else:
                conn.image.delete_image(i, ignore_missing=True)
        if img is None:
            path = path or disk_image()
            say('uploading image %s' % name)
            img = conn.image.create_image(
                name=name, filename=path, disk_format='raw',
                container_format='bare', visibility='public',
                wait=True, validate_checksum=False, **props)
        ids[name] = img.id
    for name, (ram, vcpus, disk, specs) in FLAVORS.items():
        f = conn.compute.find_flavor(name)
        if f is None:
            f = conn.compute.create_flavor(name=name, ram=ram, vcpus=vcpus,
                                           disk=disk, is_public=True)
        if specs:
            conn.compute.create_flavor_extra_specs(f, specs)
    state = load_state()
    state['images'] = ids
    state['flavors'] = sorted(FLAVORS)
    save_state(state)
    return ids


# -- the demo -------------------------------------------------------------

def api_boot(conn, name, image_id, flavor, network_id=None,
             timeout=300):
    """POST /servers and time ACTIVE and the workload line at the API."""
    session = conn.compute
    flavor_id = conn.compute.find_flavor(flavor, ignore_missing=False).id
    body = {'server': {'name': name, 'imageRef': image_id,
                       'flavorRef': flavor_id,
                       'networks': ([{'uuid': network_id}] if network_id
                                    else 'none')}}
    hdr = {'OpenStack-API-Version': 'compute %s' % COMPUTE_MICROVERSION}
    t0 = time.monotonic()
    resp = session.post('/servers', json=body, headers=hdr,
                        raise_exc=False)
    if resp.status_code >= 400:
        raise Failure('POST /servers: %s %s' % (resp.status_code, resp.text),
                      log_path('nova-api-app'))
    sid = resp.json()['server']['id']
    return poll_boot(conn, sid, t0, timeout)


def poll_boot(conn, sid, t0, timeout=300):
    """Times from ``t0`` to ACTIVE and to the workload line, at the API."""
    session = conn.compute
    hdr = {'OpenStack-API-Version': 'compute %s' % COMPUTE_MICROVERSION}
    result = {'id': sid}
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        s = session.get('/servers/%s' % sid, headers=hdr).json()['server']
        if s['status'] == 'ACTIVE':
            result['active'] = time.monotonic() - t0
            result['active_at'] = time.time()
            break
        if s['status'] == 'ERROR':
            raise Failure('server %s went to ERROR: %s' % (
                sid, s.get('fault', {}).get('message')),
                log_path('nova-compute'))
        time.sleep(0.05)
    else:
        raise Failure('server %s not ACTIVE after %ds' % (sid, timeout),
                      log_path('nova-compute'))
    while time.monotonic() < deadline:
        out = session.post('/servers/%s/action' % sid, headers=hdr,
                           json={'os-getConsoleOutput': {}})
        if WORKLOAD_LINE in (out.json().get('output') or ''):
            result['line'] = time.monotonic() - t0
            return result
        time.sleep(0.1)
    raise Failure('no "%s" in the console of %s after %ds'
                  % (WORKLOAD_LINE, sid, timeout), log_path('nova-compute'))


def cli_boot(conn, name, image, flavor, network=None, timeout=300):
    """``openstack server create --wait --network NET``, timed at the API.

    The CLI's debug output marks the moment it sends ``POST /servers``;
    from then on the API is polled for ACTIVE and the console for the
    workload line while the CLI waits (it polls every 5 s).
    """
    nic = ['--network', network] if network else ['--nic', 'none']
    cmd = ([os.path.join(BIN, 'openstack'), '--debug', 'server', 'create',
            '--wait'] + nic +
           ['--flavor', flavor, '--image', image, '-f', 'json', name])
    print('$ openstack server create --wait %s --flavor %s --image %s %s'
          % (' '.join(nic), flavor, image, name), flush=True)
    t_cli = time.monotonic()
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    posted = []
    err_tail = []

    def read_stderr():
        pattern = re.compile(r'REQ: curl .*-X POST \S+/servers(\s|$)')
        for line in proc.stderr:
            if not posted and pattern.search(line):
                posted.append(time.monotonic())
            err_tail.append(line)
            del err_tail[:-40]
    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while not posted and proc.poll() is None and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    sid = None
    while posted and sid is None and time.monotonic() < deadline:
        for srv in conn.compute.servers(name='^%s$' % re.escape(name)):
            sid = srv.id
        if sid is None:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    if sid is None:
        proc.wait()
        reader.join(5)
        raise Failure('openstack server create failed (exit %s): %s' % (
            proc.returncode, ''.join(err_tail[-5:]).strip()),
            log_path('nova-api-app'))
    result = poll_boot(conn, sid, posted[0], timeout)
    out, _ = proc.communicate(timeout=timeout)
    reader.join(5)
    result['cli'] = time.monotonic() - t_cli
    if proc.returncode:
        raise Failure('openstack server create exited %d: %s' % (
            proc.returncode, ''.join(err_tail[-5:]).strip()),
            log_path('nova-compute'))
    try:
        shown = json.loads(out)
        flavor_shown = shown.get('flavor')
        if isinstance(flavor_shown, dict):
            flavor_shown = flavor_shown.get('name')
        print('  id %s  status %s  flavor %s  image %s' % (
            shown.get('id'), shown.get('status'), flavor_shown,
            (shown.get('image') or '').split(' ')[0]))
    except ValueError:
        print(out)
    return result


def openstack_cli(*args):
    return subprocess.run([os.path.join(BIN, 'openstack')] + list(args),
                          env=cli_env(), capture_output=True, text=True)


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
            raise Failure('%s does not answer ping from %s: %s' % (
                address, PROVIDER_NETNS, proc.stdout + proc.stderr),
                log_path('nova-compute'))
        time.sleep(0.2)


def demo(conn, repeat=1, keep=False, cli=False, network=True):
    state = load_state()
    ids = state.get('images') or images_and_flavors(conn)
    net = (state.get('network') or {}) if network else {}
    network_id = net.get('network_id')
    if network and not network_id:
        raise Failure('no provider network %s: run tools/allinone start'
                      % NETWORK)
    runs = []
    for i in range(repeat):
        name = 'aio-demo-%d' % (i + 1)
        for old in conn.compute.servers(name='^%s$' % name):
            conn.compute.delete_server(old)
            conn.compute.wait_for_delete(old)
        if cli and i == 0:
            r = cli_boot(conn, name, IMAGE, 'clear.tiny.cc',
                         NETWORK if network_id else None)
        else:
            r = api_boot(conn, name, ids[IMAGE], 'clear.tiny.cc',
                         network_id)
        runs.append(r)
        say('%s: POST /servers -> ACTIVE %.2fs, -> "%s" %.2fs (at the API)'
            % (name, r['active'], WORKLOAD_LINE, r['line']))
        address = None
        if network_id:
            server = conn.compute.get_server(r['id'])
            address = [a['addr'] for a in server.addresses.get(NETWORK, [])
                       if a['version'] == 4][0]
            waited, out = ping_from_provider(address)
            r['address'] = address
            r['ping'] = r['line'] + waited
        if i == 0:
            out_console = openstack_cli('console', 'log', 'show', r['id'])
            print('$ openstack console log show %s' % name)
            print(out_console.stdout.rstrip() or out_console.stderr.rstrip())
            if address:
                print('$ ip netns exec %s busybox ping -c 1 %s'
                      % (PROVIDER_NETNS, address))
                print(out.rstrip())
        if address:
            say('%s: %s on %s answers ping from the provider namespace '
                '%.2fs after POST' % (name, address, NETWORK, r['ping']))
        if not keep:
            t0 = time.monotonic()
            server = conn.compute.get_server(r['id'])
            conn.compute.delete_server(server)
            conn.compute.wait_for_delete(server, interval=0.1)
            r['delete'] = time.monotonic() - t0
    summary = {'runs': runs, 'network': NETWORK if network_id else None}
    if runs:
        summary['median_active'] = statistics.median(
            r['active'] for r in runs)
        summary['median_line'] = statistics.median(r['line'] for r in runs)
        say('median of %d: POST -> ACTIVE %.2fs, POST -> workload line '
            '%.2fs' % (len(runs), summary['median_active'],
                       summary['median_line']))
        if network_id:
            summary['median_ping'] = statistics.median(
                r['ping'] for r in runs)
            say('median of %d: POST -> answers ping %.2fs'
                % (len(runs), summary['median_ping']))
    state = load_state()
    state['last_demo'] = summary
    save_state(state)
    return summary


# -- subcommands ------------------------------------------------------------

def cmd_up(args):
    t0 = float(os.environ.get('AIO_T0') or time.time())
    pw = passwords()
    conn = services_up(pw)
    images_and_flavors(conn)
    state = load_state()
    state.update(ready=True, home=AIO_HOME, venv=VENV,
                 instances_path=INSTANCES, clouds=os.path.join(
                     AIO_HOME, 'clouds.yaml'), cloud='nova-clear-aio',
                 compute_host=socket.gethostname(), logs=LOGS,
                 compute_user=COMPUTE_USER, compute_state=COMPUTE_STATE,
                 compute_locks=COMPUTE_LOCKS, sudoers=SUDOERS,
                 compute_conf=os.path.join(ETC, 'nova', 'nova-cpu.conf'),
                 workload_line=WORKLOAD_LINE, exit_command=EXIT_COMMAND)
    save_state(state)
    if args.command == 'start':
        return
    say('demo: a Clear Container through openstack server create')
    summary = demo(conn, args.repeat, cli=True)
    if os.environ.get('AIO_T0'):
        say('from "tools/allinone up" to the first ACTIVE server: %.0fs, '
            'to the end: %.0fs' % (summary['runs'][0]['active_at'] - t0,
                                   time.time() - t0))
    print('\nReady.  . %s; openstack server list' %
          os.path.join(AIO_HOME, 'admin-openrc'))
    return summary


def cmd_boot(args):
    demo(connection(), args.repeat, args.keep, args.cli,
         network=not args.nic_none)


def cmd_status(args):
    ok = True
    proxy = load_state().get('libvirt_proxy')
    for name in SERVICES:
        pid = running_pid(name)
        if name == 'libvirt-proxy' and not proxy and not pid:
            continue
        port = PORTS.get(name)
        extra = ''
        if port:
            extra = ' port %d %s' % (port, 'open' if port_open(port)
                                     else 'closed')
        if pid:
            try:
                import pwd
                extra += ' as %s' % pwd.getpwuid(
                    os.stat('/proc/%d' % pid).st_uid).pw_name
            except (OSError, KeyError):
                pass
        print('%-21s %s%s' % (name, 'running pid %d' % pid if pid
                              else 'stopped', extra))
        ok = ok and bool(pid)
    problem = provider_host_problem()
    print('%-21s %s' % ('provider-net', problem or '%s (%s) <-> %s in netns '
                        '%s, %s' % (PHYS_IF, PHYSNET, PEER_IF,
                                    PROVIDER_NETNS, GATEWAY)))
    ok = ok and not problem
    print('logs: %s' % LOGS)
    return 0 if ok else 3


def cmd_stop(args):
    for name in reversed(SERVICES):
        if stop_process(name):
            say('stopped %s' % name)
    provider_host_down()
    state = load_state()
    if state:
        state['ready'] = False
        save_state(state)


def cmd_restart(args):
    for name in args.services:
        if name not in SERVICES:
            raise Failure('unknown service %r (known: %s)'
                          % (name, ', '.join(SERVICES)))
    for name in args.services:
        stop_process(name)
    pw = passwords()
    del pw
    # start again with the same commands as "up" (idempotent)
    return cmd_up(argparse.Namespace(command='start', repeat=0))


def main():
    parser = argparse.ArgumentParser(
        prog='tools/allinone', description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command')
    for name in ('up', 'start'):
        p = sub.add_parser(name)
        p.add_argument('--repeat', type=int, default=1,
                       help='demo boots (median reported)')
    p = sub.add_parser('boot')
    p.add_argument('--repeat', type=int, default=1)
    p.add_argument('--keep', action='store_true',
                   help='do not delete the demo servers')
    p.add_argument('--cli', action='store_true',
                   help='create the first server with "openstack server '
                        'create --wait" (timed at the API all the same)')
    p.add_argument('--nic-none', action='store_true',
                   help='boot without a port (default: on %s)' % NETWORK)
    sub.add_parser('status')
    sub.add_parser('stop')
    p = sub.add_parser('restart')
    p.add_argument('services', nargs='+')
    args = parser.parse_args()
    args.command = args.command or 'up'
    if not hasattr(args, 'repeat'):
        args.repeat = 1
    if os.geteuid() != 0:
        print('tools/allinone must run as root', file=sys.stderr)
        return 2
    os.makedirs(LOGS, exist_ok=True)
    os.makedirs(RUN, exist_ok=True)
    handler = {'up': cmd_up, 'start': cmd_up, 'boot': cmd_boot,
               'status': cmd_status, 'stop': cmd_stop,
               'restart': cmd_restart}[args.command]
    try:
        rc = handler(args)
    except Failure as e:
        print('\n[allinone] FAILED: %s' % e, file=sys.stderr)
        if e.log:
            print('--- last lines of %s ---\n%s\n---' % (e.log, tail(e.log)),
                  file=sys.stderr)
        return 1
    return rc if isinstance(rc, int) else 0


if __name__ == '__main__':
    sys.exit(main())
