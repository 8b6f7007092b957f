"""A group-restricted socket in front of libvirtd's read-write socket.

    libvirt_sock_proxy.py LISTEN_PATH GROUP [TARGET]

On a Debian host libvirtd lets members of the ``libvirt`` group use
``qemu:///system`` through polkit (its rule 60-libvirt.rules).  polkit
needs the D-Bus system bus, which hosts without systemd (these CI
machines) do not run: libvirtd then refuses every unprivileged client
("Unable to get system bus connection"), and a libvirtd shared with other
users cannot be restarted with ``auth_unix_rw = "none"`` and
``unix_sock_group = "libvirt"``.  This proxy gives the same access rule
without restarting it: LISTEN_PATH is a socket of mode 0660, group GROUP
(``libvirt``); each connection to it is relayed byte for byte to TARGET
(default ``/run/libvirt/libvirt-sock``).  Whoever may open the socket
(root and members of GROUP) gets what the libvirt group gets on a host
with polkit.  nova-compute reaches it with ``[clear] connection_uri =
qemu+unix:///system?socket=LISTEN_PATH``.

tools/allinone starts it (as root) only when the unprivileged
nova-compute user cannot use ``qemu:///system`` directly.
"""

import grp
import os
import signal
import socket
import sys
import threading

TARGET = '/run/libvirt/libvirt-sock'


def _pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def _relay(client, target):
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(target)
    except OSError as e:
        print('cannot connect to %s: %s' % (target, e), flush=True)
        client.close()
        upstream.close()
        return
    back = threading.Thread(target=_pump, args=(upstream, client),
                            daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def main(argv):
    if len(argv) not in (3, 4):
        print(__doc__.split('\n\n')[1], file=sys.stderr)
        return 2
    path, group = argv[1], argv[2]
    target = argv[3] if len(argv) == 4 else TARGET
    gid = grp.getgrnam(group).gr_gid
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        server.bind(path)
    finally:
        os.umask(old)
    os.chown(path, 0, gid)
    os.chmod(path, 0o660)
    server.listen(64)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print('relaying %s (group %s) to %s' % (path, group, target),
          flush=True)
    try:
        while True:
            client, _addr = server.accept()
            threading.Thread(target=_relay, args=(client, target),
                             daemon=True).start()
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


if __name__ == '__main__':
    sys.exit(main(sys.argv))
