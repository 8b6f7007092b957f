"""Build the host's kernel + boot initramfs (``boot-init.sh``).

The kernel comes from a Debian kernel package (``apt-get download`` and
``dpkg-deb -x``, nothing installed), the modules the boot initramfs needs
to reach the root disk are packed in load order, with static busybox.
The helpers are the asset builders' (:mod:`nova_clear.buildtools`), shared
with the guest builder.
"""

import os
import shutil
import tempfile

import zstandard

from nova_clear.buildtools import cpio
from nova_clear.buildtools import debian
from nova_clear.hostos import store

WANTED_MODULES = ('virtio_mmio', 'virtio_blk', 'ext4')


def script(name):
    """A shell script shipped beside this module."""
    with open(os.path.join(os.path.dirname(__file__), name), 'rb') as f:
        return f.read()


def initramfs_bytes(busybox_data, modules):
    """The zstd-compressed newc archive; ``modules`` is [(name, data)]."""
    entries = [cpio.directory(d) for d in
               ('bin', 'dev', 'lib', 'lib/modules', 'newroot', 'proc',
                'sys', 'sysroot')]
    entries += [cpio.chardev('dev/console', 5, 1),
                cpio.chardev('dev/null', 1, 3, perm=0o666),
                cpio.regular('bin/busybox', busybox_data, perm=0o755),
                cpio.regular('init', script('boot-init.sh'), perm=0o755),
                cpio.regular('lib/boot-state.sh', script('boot-state.sh'))]
    entries += debian.module_entries(modules)
    return zstandard.ZstdCompressor(level=12).compress(cpio.pack(entries))


def build_boot(dest, kernel_package=debian.DEFAULT_KERNEL_PACKAGE,
               kernel_deb=None, busybox=debian.BUSYBOX, log=print):
    """Write ``dest/vmlinuz`` and ``dest/initrd.img``; returns release.
    Failures are :class:`~nova_clear.buildtools.errors.BuildError`."""
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='clear-boot-') as work:
        deb = debian.fetch_kernel_deb(work, kernel_package, kernel_deb, log)
        kern = debian.unpack_kernel(deb, work)
        modules = debian.load_modules(kern.moddir, WANTED_MODULES)
        with open(busybox, 'rb') as f:
            busybox_data = f.read()
        data = initramfs_bytes(busybox_data, modules)
        store.write_atomic(os.path.join(dest, 'initrd.img'), data)
        tmp = os.path.join(dest, '.vmlinuz.tmp')
        shutil.copyfile(kern.vmlinuz, tmp)
        os.replace(tmp, os.path.join(dest, 'vmlinuz'))
        log('kernel %s, boot modules: %s' % (
            kern.release, ' '.join(n for n, _data in modules)))
    return kern.release
