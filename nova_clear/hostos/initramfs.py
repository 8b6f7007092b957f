"""Build the host's kernel + boot initramfs (``boot-init.sh``).

The kernel comes from a Debian kernel package (``apt-get download`` and
``dpkg-deb -x``, nothing installed), the modules the boot initramfs needs
to reach the root disk are packed in load order, with static busybox.
The helpers are those of the guest builder (``nova_clear.guest.build``).
"""

import os
import shutil
import subprocess
import tempfile

import zstandard

from nova_clear.guest import build
from nova_clear.guest import cpio
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
    entries += build.module_entries(modules)
    return zstandard.ZstdCompressor(level=12).compress(cpio.pack(entries))


def build_boot(dest, kernel_package=build.DEFAULT_KERNEL_PACKAGE,
               kernel_deb=None, busybox=build.BUSYBOX, log=print):
    """Write ``dest/vmlinuz`` and ``dest/initrd.img``; returns release."""
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='clear-boot-') as work:
        if kernel_deb is None:
            package = build.resolve_kernel_package(kernel_package)
            log('downloading %s' % package)
            kernel_deb = build.download_deb(package, work)
        tree = os.path.join(work, 'tree')
        subprocess.run(['dpkg-deb', '-x', kernel_deb, tree], check=True,
                       capture_output=True)
        bootdir = os.path.join(tree, 'boot')
        kernels = [f for f in os.listdir(bootdir)
                   if f.startswith('vmlinuz-')]
        if len(kernels) != 1:
            raise build.BuildError('%s holds no single kernel' % kernel_deb)
        release = kernels[0][len('vmlinuz-'):]
        moddir = os.path.join(tree, 'lib', 'modules', release)
        index = build.index_modules(moddir)
        order = build.order_modules(
            WANTED_MODULES, index, build.builtin_modules(moddir),
            lambda n: build.module_depends(build.read_module(index[n])))
        with open(busybox, 'rb') as f:
            busybox_data = f.read()
        data = initramfs_bytes(busybox_data, [
            (n, build.read_module(index[n])) for n in order])
        store.write_atomic(os.path.join(dest, 'initrd.img'), data)
        tmp = os.path.join(dest, '.vmlinuz.tmp')
        shutil.copyfile(os.path.join(bootdir, kernels[0]), tmp)
        os.replace(tmp, os.path.join(dest, 'vmlinuz'))
        log('kernel %s, boot modules: %s' % (release, ' '.join(order)))
    return release
