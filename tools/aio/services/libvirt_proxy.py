"""The libvirt socket proxy (``tools/libvirt_sock_proxy.py``, as root):
libvirtd's socket for the group ``libvirt``, where libvirtd cannot admit
that group itself (polkit without a D-Bus system bus).  Runs only where
``nova_compute`` found it needs it (aio.json: ``libvirt_proxy``)."""

import grp
import os
import sys

from tools.aio import process
from tools.aio import settings
from tools.aio import state

LIBVIRT_SOCK = '/run/libvirt/libvirt-sock'
SOCK = os.path.join(settings.RUN, 'libvirt', 'libvirt-sock')
PROCESSES = ['libvirt-proxy']
PORTS = {}
CONFIG_FILES = {}
CATALOG = []
NEEDS = ()


def uri(direct):
    """nova-compute's libvirt URI: qemu:///system when it can use that
    ``direct``ly, else this proxy's socket (recorded in aio.json)."""
    if state.load().get('libvirt_proxy') != (not direct):
        state.update(libvirt_proxy=not direct)
    if direct:
        return 'qemu:///system'
    return 'qemu+unix:///system?socket=%s' % SOCK


def wanted():
    return bool(state.load().get('libvirt_proxy'))


def configure():
    pass


def init():
    pass


def start():
    if not wanted():
        process.stop('libvirt-proxy')
        return
    d = os.path.dirname(SOCK)
    os.makedirs(d, exist_ok=True)
    os.chown(d, 0, grp.getgrnam('libvirt').gr_gid)
    os.chmod(d, 0o750)
    process.start('libvirt-proxy', [
        sys.executable,
        os.path.join(settings.ROOT, 'tools', 'libvirt_sock_proxy.py'),
        SOCK, 'libvirt', LIBVIRT_SOCK])
    # nova-compute, next in the order, connects to it right away
    process.wait_for(lambda: process.ensure_alive('libvirt-proxy') or
                     os.path.exists(SOCK), 30, 'the libvirt socket proxy',
                     process.log_path('libvirt-proxy'))


def wait():
    if wanted():
        process.ensure_alive('libvirt-proxy')


def stop():
    process.stop_all(PROCESSES)
