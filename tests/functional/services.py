"""Real libvirtd + virtlogd (and Open vSwitch) for functional tests.

The fixture reuses running daemons.  When none runs, it starts
``virtlogd -d`` and ``libvirtd -d`` and stops them (by PID) when the last
test process using them is done: stestr runs several worker processes, so a
small reference count under a file lock decides who starts and who stops.
(Never start a second libvirtd beside a running one: on exit it removes the
running one's socket.)
"""

import atexit
import fcntl
import json
import os
import signal
import subprocess
import time

import fixtures
import libvirt

URI = 'qemu:///system'
STATE = '/run/nova-clear-functional-libvirt.json'
PIDFILES = {'virtlogd': '/run/virtlogd.pid', 'libvirtd': '/run/libvirtd.pid'}


def libvirt_alive():
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError:
        return False
    conn.close()
    return True


def _read_state(path=STATE):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {'started': {}, 'users': []}


def _write_state(state, path=STATE):
    with open(path, 'w') as f:
        json.dump(state, f)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_daemons():
    started = {}
    for name in ('virtlogd', 'libvirtd'):
        pidfile = PIDFILES[name]
        if os.path.exists(pidfile):
            try:
                with open(pidfile) as f:
                    if _pid_alive(int(f.read().strip())):
                        continue
            except ValueError:
                pass
        subprocess.run([name, '-d', '--pid-file', pidfile], check=True)
        for _ in range(100):
            if os.path.exists(pidfile):
                break
            time.sleep(0.1)
        with open(pidfile) as f:
            started[name] = int(f.read().strip())
    for _ in range(100):
        if libvirt_alive():
            return started
        time.sleep(0.1)
    raise RuntimeError('libvirtd started but %s does not answer' % URI)


def ensure_libvirt():
    """Make sure libvirtd answers at qemu:///system until this process exits.

    The last test process to exit stops what the tests started.
    """
    LIBVIRT.ensure()


class LibvirtDaemons(fixtures.Fixture):
    """Fixture form of :func:`ensure_libvirt`."""

    def _setUp(self):
        ensure_libvirt()


# -- Open vSwitch, userspace datapath ----------------------------------------
# There is no openvswitch kernel module on these hosts: ovs-vswitchd runs
# its userspace datapath, so bridges need datapath_type=netdev.  The
# daemons get their own database and run directory (their unixctl and
# bridge management sockets too, through OVS_RUNDIR): nothing is shared
# with a system Open vSwitch.
OVS_DIR = '/run/nova-clear-ft-ovs'
OVS_DB_SOCK = os.path.join(OVS_DIR, 'db.sock')
OVS_STATE = OVS_DIR + '.json'
OVS_SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema'


def vsctl(*args, check=True, timeout=10):
    """ovs-vsctl on the tests' database."""
    return subprocess.run(
        ('ovs-vsctl', '--db=unix:' + OVS_DB_SOCK, '--timeout=%d' % timeout)
        + args, check=check, capture_output=True, text=True).stdout


def _ovs_pid(name):
    try:
        with open(os.path.join(OVS_DIR, name + '.pid')) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def ovs_alive():
    if not (_ovs_pid('ovsdb-server') and _ovs_pid('ovs-vswitchd')):
        return False
    try:
        vsctl('show', timeout=5)
    except subprocess.CalledProcessError:
        return False
    return True


def _start_ovs():
    """Start what is missing; return {name: pid} of what was started."""
    os.makedirs(OVS_DIR, exist_ok=True)
    env = dict(os.environ, OVS_RUNDIR=OVS_DIR, OVS_DBDIR=OVS_DIR,
               OVS_LOGDIR=OVS_DIR)
    started = {}
    common = ['--detach', '--no-chdir']

    def opts(name):
        return ['--pidfile=%s/%s.pid' % (OVS_DIR, name),
                '--unixctl=%s/%s.ctl' % (OVS_DIR, name),
                '--log-file=%s/%s.log' % (OVS_DIR, name)]
    if not _ovs_pid('ovsdb-server'):
        db = os.path.join(OVS_DIR, 'conf.db')
        if os.path.exists(db):
            os.unlink(db)    # a fresh database: no bridges of a past run
        subprocess.run(['ovsdb-tool', 'create', db, OVS_SCHEMA], check=True)
        subprocess.run(['ovsdb-server', db, '--remote=punix:' + OVS_DB_SOCK]
                       + common + opts('ovsdb-server'), check=True, env=env)
        started['ovsdb-server'] = _ovs_pid('ovsdb-server')
        vsctl('--no-wait', 'init')
        # Without it the userspace datapath forwards what it reads from a
        # kernel device (AF_PACKET) as is: a virtio-net guest's TCP
        # segments (and a veth's) carry partial checksums, which the
        # receiver drops (InCsumErrors; ICMP and ARP pass, TCP does not).
        # With it OVS reads and writes the kernel's virtio-net headers and
        # the kernel completes the checksums.  Read at ovs-vswitchd start.
        vsctl('--no-wait', 'set', 'Open_vSwitch', '.',
              'other_config:userspace-tso-enable=true')
    if not _ovs_pid('ovs-vswitchd'):
        subprocess.run(['ovs-vswitchd', 'unix:' + OVS_DB_SOCK]
                       + common + opts('ovs-vswitchd'), check=True, env=env)
        started['ovs-vswitchd'] = _ovs_pid('ovs-vswitchd')
    for _ in range(100):
        if ovs_alive():
            return started
        time.sleep(0.1)
    raise RuntimeError('Open vSwitch started in %s but does not answer'
                       % OVS_DIR)


def ensure_ovs():
    """Make sure ovsdb-server and ovs-vswitchd answer at
    :data:`OVS_DB_SOCK` until this process exits; the last test process
    to exit stops (by PID) what the tests started."""
    os.makedirs(OVS_DIR, exist_ok=True)
    OVS.ensure()


def _wait_exit(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open('/proc/%d/stat' % pid) as f:
                if f.read().rsplit(')', 1)[1].split()[0] == 'Z':
                    return      # exited; its parent has not reaped it
        except (OSError, IndexError):
            return
        time.sleep(0.05)


class SharedDaemons:
    """Daemons the functional tests share across stestr's worker processes.

    A reference count of test processes under a file lock: the first one
    starts what is not running (``start`` returns {name: pid} of what it
    started), every one registers, and the last one to exit stops, by PID
    and in ``stop_order``, what the tests started - waiting for each to
    exit, so that a test process starting meanwhile never reuses a dying
    daemon.  Daemons a killed test process started stay the tests' own.
    """

    def __init__(self, state_path, alive, start, stop_order):
        self.state_path = state_path
        self.lock_path = state_path + '.lock'
        self.alive = alive
        self.start = start
        self.stop_order = stop_order
        self._acquired = False

    def ensure(self):
        if self._acquired and self.alive():
            return
        with open(self.lock_path, 'a') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = _read_state(self.state_path)
            state['users'] = [p for p in state['users'] if _pid_alive(p)]
            state['started'] = {n: p for n, p in state['started'].items()
                                if _pid_alive(p)}
            if not self.alive():
                state['started'].update(self.start())
            if os.getpid() not in state['users']:
                state['users'].append(os.getpid())
            _write_state(state, self.state_path)
        if not self._acquired:
            atexit.register(self.release)
            self._acquired = True

    def release(self):
        with open(self.lock_path, 'a') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = _read_state(self.state_path)
            state['users'] = [p for p in state['users']
                              if p != os.getpid() and _pid_alive(p)]
            if not state['users']:
                for name in self.stop_order:
                    pid = state['started'].pop(name, None)
                    if pid and _pid_alive(pid):
                        os.kill(pid, signal.SIGTERM)
                        _wait_exit(pid)
            _write_state(state, self.state_path)


LIBVIRT = SharedDaemons(STATE, libvirt_alive, _start_daemons,
                        ('libvirtd', 'virtlogd'))
OVS = SharedDaemons(OVS_STATE, ovs_alive, _start_ovs,
                    ('ovs-vswitchd', 'ovsdb-server'))
