"""The machine devstack runs on: a fresh Debian 12 root file system with
its own network, mount, PID, UTS and IPC namespaces.

Devstack installs packages, writes /etc, runs MariaDB, RabbitMQ, Apache,
libvirtd and a dozen services, and makes network devices: on a real
cloud it gets a VM of its own.  Here it gets the nearest thing this host
allows without a second kernel:

- ``ROOT``: Debian bookworm made by mmdebstrap from Debian's mirror,
  unpacked fresh for every check;
- the network namespace ``NETNS`` with one veth to this host
  (``HOST_ADDR``/``MACHINE_ADDR``), NATed out, so the machine reaches
  Debian's mirror and PyPI and none of its ports or devices meet the
  all-in-one's;
- a PID namespace whose PID 1 is a reaper (``INIT``): the daemons the
  systemctl stand-in starts are its children, and stopping the machine
  (killing PID 1) ends every process in it;
- a mount namespace: the machine's /run, /dev/shm and /proc are its own,
  so its libvirtd is not a second libvirtd beside this host's.
"""

import os
import shlex
import shutil
import signal
import subprocess
import time

from tools.devstack_check import settings

INIT = '/sbin/nova-clear-ds-init'
INIT_SOURCE = '''\
import os, signal, time
# PID 1 of the devstack machine: reap orphans until told to stop.
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.5)
'''
PIDFILE = os.path.join(settings.RUN, 'init.pid')
PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'


class Failure(Exception):
    pass


def sh(cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, **kw)


def quiet(cmd):
    return subprocess.run(cmd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def mmdebstrap_command(dest):
    return ['mmdebstrap', '--variant=minbase',
            '--include=' + ','.join(settings.ROOTFS_PACKAGES),
            settings.SUITE, dest, settings.MIRROR]


def ensure_rootfs_tar():
    """The bookworm tarball (made once, about a minute)."""
    if os.path.exists(settings.ROOTFS_TAR):
        return False
    os.makedirs(settings.CACHE, exist_ok=True)
    tmp = settings.ROOTFS_TAR + '.tmp'
    sh(mmdebstrap_command(tmp))
    os.rename(tmp, settings.ROOTFS_TAR)
    return True


def running_pid():
    try:
        with open(PIDFILE) as f:
            pid = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            if INIT.encode() in f.read():
                return pid
    except OSError:
        pass
    return None


def fresh_root():
    """Unpack a new root file system (the previous one is removed)."""
    if running_pid():
        raise Failure('the devstack machine is running: '
                      'tools/devstack-check down first')
    if os.path.exists(settings.ROOT):
        sh(['rm', '-rf', '--one-file-system', settings.ROOT])
    os.makedirs(settings.ROOT)
    sh(['tar', '-xf', settings.ROOTFS_TAR, '-C', settings.ROOT])
    with open(os.path.join(settings.ROOT, INIT.lstrip('/')), 'w') as f:
        f.write(INIT_SOURCE)
    shutil.copy('/etc/resolv.conf', os.path.join(settings.ROOT, 'etc'))
    # This network inspects TLS: the machine trusts what this host trusts
    # (the local CAs; pip told to use the system bundle, not certifi's).
    local_cas = '/usr/local/share/ca-certificates'
    if os.path.isdir(local_cas):
        for name in os.listdir(local_cas):
            shutil.copy(os.path.join(local_cas, name), os.path.join(
                settings.ROOT, local_cas.lstrip('/'), name))
    with open(os.path.join(settings.ROOT, 'etc/pip.conf'), 'w') as f:
        f.write('[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n')
    with open(os.path.join(settings.ROOT, 'etc/hostname'), 'w') as f:
        f.write(settings.HOSTNAME + '\n')
    with open(os.path.join(settings.ROOT, 'etc/hosts'), 'w') as f:
        f.write('127.0.0.1 localhost\n%s %s\n' % (settings.MACHINE_ADDR,
                                                  settings.HOSTNAME))


def network_commands():
    """The commands that make the machine's network (pure, for tests)."""
    ns, veth = settings.NETNS, settings.HOST_VETH
    peer = veth + 'p'
    net = '%s/%d' % (settings.HOST_ADDR, settings.PREFIX)
    return [
        ['ip', 'netns', 'add', ns],
        ['ip', 'link', 'add', veth, 'type', 'veth', 'peer', 'name', peer],
        ['ip', 'link', 'set', peer, 'netns', ns],
        ['ip', '-n', ns, 'link', 'set', peer, 'name', 'eth0'],
        ['ip', 'addr', 'add', net, 'dev', veth],
        ['ip', 'link', 'set', veth, 'up'],
        ['ip', '-n', ns, 'addr', 'add',
         '%s/%d' % (settings.MACHINE_ADDR, settings.PREFIX), 'dev', 'eth0'],
        ['ip', '-n', ns, 'link', 'set', 'eth0', 'up'],
        ['ip', '-n', ns, 'link', 'set', 'lo', 'up'],
        ['ip', '-n', ns, 'route', 'add', 'default', 'via',
         settings.HOST_ADDR],
        ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'],
    ] + [['iptables'] + rule for rule in nat_rules('-A')]


def nat_rules(action):
    src = '%s/%d' % (settings.HOST_ADDR, settings.PREFIX)
    return [['-t', 'nat', action, 'POSTROUTING', '-s', src, '!', '-o',
             settings.HOST_VETH, '-j', 'MASQUERADE'],
            ['-t', 'filter', action, 'FORWARD', '-i', settings.HOST_VETH,
             '-j', 'ACCEPT'],
            ['-t', 'filter', action, 'FORWARD', '-o', settings.HOST_VETH,
             '-j', 'ACCEPT']]


def network_up():
    if os.path.exists('/run/netns/' + settings.NETNS):
        network_down()
    for cmd in network_commands():
        sh(cmd)


def network_down():
    for rule in nat_rules('-D'):
        quiet(['iptables'] + rule)
    quiet(['ip', 'link', 'del', settings.HOST_VETH])
    quiet(['ip', 'netns', 'del', settings.NETNS])


def boot_script():
    """Run in the new namespaces before the root switches to ROOT."""
    r = shlex.quote(settings.ROOT)
    return '; '.join([
        'set -e',
        'mount --make-rprivate /',
        # its / must be a mount point, as a machine's is (ip netns and
        # unshare --propagation remount it)
        'mount --bind %s %s' % (r, r),
        'mount --rbind /dev %s/dev' % r,
        'mount -t tmpfs -o mode=1777 shm %s/dev/shm' % r,
        'mount -t proc proc %s/proc' % r,
        'mount --rbind /sys %s/sys' % r,
        'mount -t tmpfs -o mode=755 run %s/run' % r,
        'hostname %s' % settings.HOSTNAME,
        'exec chroot %s /usr/bin/python3 %s' % (r, INIT)])


def up():
    """Start PID 1 of the machine in its namespaces; returns its PID."""
    pid = running_pid()
    if pid:
        return pid
    os.makedirs(settings.RUN, exist_ok=True)
    os.makedirs(settings.LOGS, exist_ok=True)
    network_up()
    console = open(os.path.join(settings.LOGS, 'machine.log'), 'a')
    launcher = subprocess.Popen(
        ['ip', 'netns', 'exec', settings.NETNS, 'unshare', '--mount',
         '--pid', '--fork', '--uts', '--ipc', '--propagation', 'private',
         '--', '/bin/sh', '-c', boot_script()],
        start_new_session=True, stdin=subprocess.DEVNULL, stdout=console,
        stderr=subprocess.STDOUT)
    console.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in children(launcher.pid):
            try:
                with open('/proc/%d/cmdline' % child, 'rb') as f:
                    if INIT.encode() in f.read():
                        with open(PIDFILE, 'w') as out:
                            out.write('%d %d\n' % (child, launcher.pid))
                        return child
            except OSError:
                pass
        if launcher.poll() is not None:
            raise Failure('the machine did not start (exit %s)'
                          % launcher.returncode)
        time.sleep(0.2)
    raise Failure('the machine did not start in 30 s')


def children(pid):
    try:
        with open('/proc/%d/task/%d/children' % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def down():
    """Stop every process of the machine (PID 1 first), its network."""
    pid = running_pid()
    if pid:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while running_pid() and time.monotonic() < deadline:
            time.sleep(0.2)
    if os.path.exists(PIDFILE):
        os.unlink(PIDFILE)
    network_down()


def enter_command(cmd, user=None, cwd='/'):
    """argv that runs the shell command ``cmd`` inside the machine."""
    pid = running_pid()
    if not pid:
        raise Failure('the devstack machine is not running: '
                      'tools/devstack-check up')
    env = ['env', '-i', 'PATH=' + PATH, 'TERM=xterm', 'LANG=C.UTF-8']
    base = ['nsenter', '-t', str(pid), '-m', '-u', '-i', '-n', '-p', '-r',
            '-w']
    if user:
        inner = 'cd %s && %s' % (shlex.quote(cwd), cmd)
        return base + env + ['su', '-', user, '-s', '/bin/bash', '-c',
                             inner]
    return base + env + ['HOME=/root', '/bin/bash', '-c',
                         'cd %s && %s' % (shlex.quote(cwd), cmd)]


def run(cmd, user=None, cwd='/', log=None, check=True):
    """Run ``cmd`` in the machine; output to ``log`` (a file name) and,
    when ``log`` is None, to this terminal."""
    argv = enter_command(cmd, user=user, cwd=cwd)
    if log is None:
        rc = subprocess.run(argv).returncode
    else:
        os.makedirs(settings.LOGS, exist_ok=True)
        with open(os.path.join(settings.LOGS, log), 'a') as f:
            f.write('\n$ %s\n' % cmd)
            f.flush()
            rc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL).returncode
    if check and rc:
        raise Failure('%r exited %d%s' % (
            cmd if len(cmd) < 80 else cmd[:77] + '...', rc,
            '; see %s' % os.path.join(settings.LOGS, log) if log else ''))
    return rc


def output(cmd, user=None):
    argv = enter_command(cmd, user=user)
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE,
                          text=True).stdout
