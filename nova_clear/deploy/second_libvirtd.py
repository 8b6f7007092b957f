"""A second libvirtd + virtlogd on this machine, a compute host of its own.

For two compute hosts on one machine (the all-in-one's second host, the
live migration functional tests): the daemons run in a private mount
namespace in which ``root``'s directories are bind-mounted over
``/run/libvirt``, ``/var/lib/libvirt``, ``/etc/libvirt``,
``/var/log/libvirt`` and ``/var/cache/libvirt``, so they share no socket,
state, configuration, log or domain with the host's libvirtd
(doc/design/two-hosts-prototype.md).  The host's ``/run/libvirt`` stays
reachable from inside as ``root/host1-run``: the second daemon migrates
back to the first through ``host1-run/libvirt-sock``
(:func:`peer_uri`).

From the host's namespace the second daemon answers at :func:`uri`
(its UNIX socket) and, with ``tcp_port``, at
``qemu+tcp://127.0.0.1:<port>/system``.

Rules kept here: the pid files are inside ``root/run`` (libvirtd's and
virtlogd's defaults, ``/run/libvirtd.pid`` and ``/run/virtlogd.pid``, are
the host daemons' pid files and locks); the host UUID differs from the
host's (libvirt refuses a migration between equal host UUIDs); the
daemons are stopped by their PIDs only.  ``migration_host`` and
``migration_address`` must stay unset in qemu.conf (libvirtd refuses a
local address there): the driver passes the address per migration
(``[clear] live_migration_inbound_addr``).

Everything but :func:`start` and :func:`stop` is pure.
"""

import os
import shutil
import signal
import subprocess
import time
import uuid as uuidlib

SUBDIRS = ('run', 'lib', 'etc', 'log', 'cache', 'host1-run')
# (directory under root, where it is mounted in the namespace)
MOUNTS = (('run', '/run/libvirt'), ('lib', '/var/lib/libvirt'),
          ('etc', '/etc/libvirt'), ('log', '/var/log/libvirt'),
          ('cache', '/var/cache/libvirt'))
# Copied from the host's /etc/libvirt (not the whole directory:
# /etc/libvirt/qemu/*.xml are the host's domains).
COPIED_CONF = ('qemu.conf', 'virtlogd.conf', 'libvirt.conf')


def socket_path(root):
    """The read-write UNIX socket, as the host's namespace sees it."""
    return os.path.join(root, 'run', 'libvirt-sock')


def pid_files(root):
    return {'virtlogd': os.path.join(root, 'run', 'virtlogd.pid'),
            'libvirtd': os.path.join(root, 'run', 'libvirtd.pid')}


def uri(root):
    """libvirt URI of the second daemon from the host's namespace (its
    nova-compute's ``[clear] connection_uri``; the first host's
    ``live_migration_uri`` may be this or the TCP one)."""
    return 'qemu+unix:///system?socket=%s' % socket_path(root)


def peer_uri(root):
    """The first (host's) libvirtd as the second daemon reaches it from
    its namespace: the second host's ``[clear] live_migration_uri``."""
    return 'qemu+unix:///system?socket=%s' % os.path.join(
        root, 'host1-run', 'libvirt-sock')


def libvirtd_conf(host_uuid, tcp_port=None, listen_addr='127.0.0.1',
                  sock_group='libvirt'):
    lines = ['host_uuid = "%s"' % host_uuid,
             'unix_sock_group = "%s"' % sock_group,
             'unix_sock_ro_perms = "0777"',
             'unix_sock_rw_perms = "0770"',
             'auth_unix_ro = "none"',
             'auth_unix_rw = "none"',
             'listen_tls = 0',
             'log_outputs = "2:file:/var/log/libvirt/libvirtd.log"']
    if tcp_port:
        lines += ['listen_tcp = 1', 'listen_addr = "%s"' % listen_addr,
                  'tcp_port = "%d"' % tcp_port, 'auth_tcp = "none"']
    else:
        lines.append('listen_tcp = 0')
    return '\n'.join(lines) + '\n'


def qemu_conf_extra(migration_ports):
    """Lines appended to the copied qemu.conf: the ports incoming
    migrations listen on (two per migration: RAM and NBD)."""
    low, high = migration_ports
    return '\n# nova-clear second libvirtd\nmigration_port_min = %d\n' \
        'migration_port_max = %d\n' % (low, high)


def namespace_script(root, tcp_port=None):
    """The shell script run inside ``unshare --mount``."""
    cmds = ['set -e',
            'mount --bind /run/libvirt %s' % os.path.join(root, 'host1-run')]
    cmds += ['mount --bind %s %s' % (os.path.join(root, d), target)
             for d, target in MOUNTS]
    # do not pin the host's network namespaces in our copy of the mounts
    cmds.append('umount -l /run/netns 2>/dev/null || true')
    cmds.append('virtlogd -d -p /run/libvirt/virtlogd.pid')
    cmds.append('libvirtd -d %s-p /run/libvirt/libvirtd.pid'
                % ('-l ' if tcp_port else ''))
    return '\n'.join(cmds) + '\n'


def command(root, tcp_port=None):
    """argv starting both daemons (they detach; the namespace lives as
    long as they do)."""
    return ['unshare', '--mount', '--propagation', 'private', '--',
            '/bin/sh', '-c', namespace_script(root, tcp_port)]


def prepare(root, host_uuid=None, tcp_port=None,
            migration_ports=(49400, 49463), host_etc='/etc/libvirt',
            host_cache='/var/cache/libvirt/qemu/capabilities'):
    """The directories and configuration under ``root``; returns the host
    UUID (a new one unless given)."""
    host_uuid = host_uuid or str(uuidlib.uuid4())
    for d in SUBDIRS:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    etc = os.path.join(root, 'etc')
    for name in COPIED_CONF:
        src = os.path.join(host_etc, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(etc, name))
    with open(os.path.join(etc, 'libvirtd.conf'), 'w') as f:
        f.write(libvirtd_conf(host_uuid, tcp_port))
    with open(os.path.join(etc, 'qemu.conf'), 'a') as f:
        f.write(qemu_conf_extra(migration_ports))
    if os.path.isdir(host_cache):
        # the host's QEMU capability cache: no re-probe (seconds) at start
        dst = os.path.join(root, 'cache', 'qemu', 'capabilities')
        if not os.path.exists(dst):
            shutil.copytree(host_cache, dst)
    return host_uuid


def read_pids(root):
    """{name: pid} of the daemons whose pid file exists and is alive."""
    pids = {}
    for name, path in pid_files(root).items():
        try:
            with open(path) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if _alive(pid):
            pids[name] = pid
    return pids


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def start(root, tcp_port=None, timeout=30, **prepare_args):
    """Prepare ``root`` and start the daemons unless they run; wait for
    the socket.  Returns {name: pid}."""
    if not read_pids(root).get('libvirtd'):
        prepare(root, tcp_port=tcp_port, **prepare_args)
        subprocess.run(command(root, tcp_port), check=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = read_pids(root)
        if 'libvirtd' in pids and os.path.exists(socket_path(root)):
            return pids
        time.sleep(0.1)
    stop(root)
    raise RuntimeError('the second libvirtd in %s did not come up within '
                       '%ds (see %s)' % (root, timeout, os.path.join(
                           root, 'log', 'libvirtd.log')))


def stop(root, timeout=20):
    """Stop libvirtd, then virtlogd, by the PIDs of their pid files under
    ``root``, waiting for each to exit.  Returns the PIDs stopped."""
    stopped = []
    for name in ('libvirtd', 'virtlogd'):
        pid = read_pids(root).get(name)
        if not pid:
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        stopped.append(pid)
    return stopped
