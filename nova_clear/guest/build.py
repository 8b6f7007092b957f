"""Build the Clear Container guest assets from Debian packages.

``nova-clear-build-guest --dest DIR`` (also ``tools/build-guest-assets``):

* downloads the distribution kernel package (default
  ``linux-image-cloud-amd64``) with ``apt-get download`` and unpacks it
  with ``dpkg-deb`` -- nothing is installed on the host
  (:mod:`nova_clear.buildtools.debian`);
* packs the agent initramfs: static busybox, the agent ``init`` and the
  kernel modules a Clear Container needs (virtio-mmio, blk, console, net,
  overlayfs, virtiofs, the ACPI power button), in dependency order;
* writes ``vmlinuz``, ``initrd.img`` and ``manifest.json`` (checksums)
  atomically into DIR;
* with ``--minimal-kernel``, also builds the minimal kernel
  (:mod:`nova_clear.guest.kernel`) and writes it with a module-less
  initramfs into DIR/minimal, which the driver prefers.

The archive is reproducible: same inputs, same bytes.
"""

import argparse
import os
import shutil
import sys
import tempfile

import zstandard

from nova_clear.buildtools import cpio
from nova_clear.buildtools import debian
from nova_clear.buildtools.errors import BuildError
from nova_clear.guest import assets
from nova_clear.guest import kernel

MINIMAL_SUBDIR = assets.MINIMAL_SUBDIR
DEFAULT_KERNEL_CACHE = '/var/cache/nova-clear/kernel'
# What the agent and the domain need from the kernel when they are not
# built in (isofs: the config drive).  Dependencies are added
# automatically.
# virtio_pci: the q35 variant's devices (nova_clear.domain_pci); the
# distribution kernel has ACPI PCI hot-plug (acpiphp) built in.
WANTED_MODULES = ('virtio_mmio', 'virtio_pci', 'virtio_blk', 'virtio_console',
                  'virtio_net', 'virtio_rng', 'overlay', 'virtiofs',
                  'button', 'evdev', 'isofs')


def initramfs_entries(init_script, busybox_data, modules):
    """cpio entries of the agent initramfs; ``modules`` is [(name, data)]."""
    entries = [cpio.directory(d) for d in
               ('bin', 'dev', 'etc', 'lib', 'lib/modules', 'newroot',
                'proc', 'sbin', 'sys', 'tmp', 'usr', 'usr/bin',
                'usr/sbin')]
    entries += [
        cpio.chardev('dev/console', 5, 1),
        cpio.chardev('dev/null', 1, 3, perm=0o666),
        cpio.regular('bin/busybox', busybox_data, perm=0o755),
        cpio.symlink('bin/sh', 'busybox'),
        cpio.regular('init', init_script, perm=0o755),
    ]
    return entries + debian.module_entries(modules)


def init_script():
    with open(os.path.join(os.path.dirname(__file__), 'init.sh'),
              'rb') as f:
        return f.read()


def build(dest, kernel_package=debian.DEFAULT_KERNEL_PACKAGE, kernel_deb=None,
          busybox=debian.BUSYBOX, log=print, minimal=False,
          kernel_cache=DEFAULT_KERNEL_CACHE):
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='nova-clear-build-') as work:
        deb = debian.fetch_kernel_deb(work, kernel_package, kernel_deb, log)
        kern = debian.unpack_kernel(deb, work)
        config = debian.kernel_config(
            os.path.join(kern.boot, 'config-' + kern.release))
        modules = debian.load_modules(kern.moddir, WANTED_MODULES)
        log('kernel %s, modules: %s' % (
            kern.release, ' '.join(n for n, _data in modules)))
        with open(busybox, 'rb') as f:
            busybox_data = f.read()
        if b'linux-vdso' in busybox_data or \
                b'ld-linux' in busybox_data[:4096 * 4]:
            raise BuildError('%s is not static: install busybox-static'
                             % busybox)
        initrd = pack_initramfs(busybox_data, modules)
        manifest = write_assets(dest, kern.vmlinuz, initrd, kern.release,
                                config)
        log('wrote %s: kernel %d bytes, initramfs %d bytes' % (
            dest, manifest['kernel']['size'], manifest['initrd']['size']))
    if minimal:
        build_minimal(os.path.join(dest, MINIMAL_SUBDIR), busybox_data,
                      kernel_cache, log)
    return manifest


def pack_initramfs(busybox_data, modules):
    """The agent initramfs, zstd-compressed (the kernel decompresses it)."""
    archive = cpio.pack(initramfs_entries(init_script(), busybox_data,
                                          modules))
    return zstandard.ZstdCompressor(level=12).compress(archive)


def write_assets(dest, kernel_path, initrd, release, config):
    """vmlinuz, initrd.img and manifest.json into ``dest``, atomically
    file by file, the manifest last."""
    os.makedirs(dest, exist_ok=True)
    for name, data in (('vmlinuz', None), ('initrd.img', initrd)):
        tmp = os.path.join(dest, '.%s.tmp' % name)
        if data is None:
            shutil.copyfile(kernel_path, tmp)
        else:
            with open(tmp, 'wb') as f:
                f.write(data)
        os.replace(tmp, os.path.join(dest, name))
    return assets.write_manifest(
        dest, 'vmlinuz', 'initrd.img', release,
        acpi=config.get('CONFIG_ACPI') == 'y',
        virtio_mmio_cmdline=config.get(
            'CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES') == 'y',
        # built in, or its module is in the initramfs (WANTED_MODULES)
        virtio_pci=config.get('CONFIG_VIRTIO_PCI') in ('y', 'm'))


def build_minimal(dest, busybox_data, kernel_cache, log=print):
    """The minimal kernel (built once per configuration) and an initramfs
    without modules: everything is built in."""
    image, release = kernel.build(kernel_cache, log=log)
    config = debian.kernel_config(os.path.join(os.path.dirname(image),
                                               'config'))
    manifest = write_assets(dest, image, pack_initramfs(busybox_data, []),
                            release, config)
    log('wrote %s: minimal kernel %s, %d bytes' % (
        dest, release, manifest['kernel']['size']))
    return manifest


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='nova-clear-build-guest',
        description='Build the Clear Container kernel and agent initramfs.')
    parser.add_argument('--dest', default='/var/lib/nova-clear/guest',
                        help='assets directory ([clear]assets_path)')
    parser.add_argument('--kernel-package',
                        default=debian.DEFAULT_KERNEL_PACKAGE,
                        help='Debian kernel package to take the kernel '
                             'and modules from')
    parser.add_argument('--kernel-deb',
                        help='use this already downloaded kernel .deb')
    parser.add_argument('--busybox', default=debian.BUSYBOX,
                        help='static busybox binary (busybox-static)')
    parser.add_argument('--minimal-kernel', action='store_true',
                        help='also build the minimal kernel from Debian\'s '
                             'linux-source (several minutes, cached) into '
                             'DEST/minimal; the driver prefers it')
    parser.add_argument('--kernel-cache', default=DEFAULT_KERNEL_CACHE,
                        help='where built minimal kernels are kept')
    args = parser.parse_args(argv)
    try:
        build(args.dest, args.kernel_package, args.kernel_deb, args.busybox,
              minimal=args.minimal_kernel, kernel_cache=args.kernel_cache)
    except (BuildError, OSError) as e:
        print('nova-clear-build-guest: error: %s' % e, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
