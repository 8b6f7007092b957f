"""Build the Clear Container guest assets from Debian packages.

``nova-clear-build-guest --dest DIR`` (also ``tools/build-guest-assets``):

* downloads the distribution kernel package (default
  ``linux-image-cloud-amd64``) with ``apt-get download`` and unpacks it
  with ``dpkg-deb`` -- nothing is installed on the host;
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
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile

import zstandard

from nova_clear.guest import assets
from nova_clear.guest import cpio
from nova_clear.guest import kernel

DEFAULT_KERNEL_PACKAGE = 'linux-image-cloud-amd64'
BUSYBOX = '/bin/busybox'
MINIMAL_SUBDIR = assets.MINIMAL_SUBDIR
DEFAULT_KERNEL_CACHE = '/var/cache/nova-clear/kernel'
# What the agent and the domain need from the kernel when they are not
# built in (isofs: the config drive).  Dependencies are added
# automatically.
WANTED_MODULES = ('virtio_mmio', 'virtio_blk', 'virtio_console',
                  'virtio_net', 'virtio_rng', 'overlay', 'virtiofs',
                  'button', 'evdev', 'isofs')


class BuildError(Exception):
    pass


def _run(cmd, cwd=None):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError('%s failed (%d): %s' % (' '.join(cmd),
                                                 proc.returncode,
                                                 proc.stderr.strip()))
    return proc.stdout


def resolve_kernel_package(name):
    """Follow a metapackage (linux-image-cloud-amd64) to the real one."""
    out = _run(['apt-cache', 'depends', '--important', name])
    for line in out.splitlines():
        m = re.match(r'\s*Depends:\s*(linux-image-\S+)', line)
        if m:
            return m.group(1)
    return name


def download_deb(package, workdir):
    _run(['apt-get', 'download', package], cwd=workdir)
    debs = [f for f in os.listdir(workdir)
            if f.startswith(package + '_') and f.endswith('.deb')]
    if not debs:
        raise BuildError('apt-get download %s produced no .deb' % package)
    return os.path.join(workdir, sorted(debs)[-1])


def module_name(filename):
    base = os.path.basename(filename)
    base = re.sub(r'\.ko(\.xz|\.zst|\.gz)?$', '', base)
    return base.replace('-', '_')


def read_module(path):
    with open(path, 'rb') as f:
        data = f.read()
    if path.endswith('.xz'):
        return lzma.decompress(data)
    if path.endswith('.zst'):
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def module_depends(data):
    """Dependencies from a module's .modinfo section (``depends=a,b``)."""
    m = re.search(rb'(?:^|\0)depends=([^\0]*)\0', data)
    if not m or not m.group(1):
        return []
    return [d.decode().replace('-', '_') for d in m.group(1).split(b',')]


def index_modules(moddir):
    index = {}
    for root, _dirs, files in os.walk(moddir):
        for f in files:
            if re.search(r'\.ko(\.xz|\.zst)?$', f):
                index[module_name(f)] = os.path.join(root, f)
    return index


def builtin_modules(moddir):
    path = os.path.join(moddir, 'modules.builtin')
    if not os.path.exists(path):
        return set()
    with open(path) as f:
        return {module_name(line.strip()) for line in f if line.strip()}


def order_modules(wanted, index, builtin, depends_of):
    """Return module names in load order (dependencies first)."""
    order, visiting = [], set()

    def visit(name):
        if name in builtin or name in order:
            return
        if name not in index:
            raise BuildError('kernel module %s not found' % name)
        if name in visiting:
            raise BuildError('module dependency cycle at %s' % name)
        visiting.add(name)
        for dep in depends_of(name):
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        if name in builtin:
            continue
        visit(name)
    return order


def kernel_config(path):
    config = {}
    with open(path) as f:
        for line in f:
            m = re.match(r'(CONFIG_\w+)=(.*)', line.strip())
            if m:
                config[m.group(1)] = m.group(2)
    return config


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
    return entries + module_entries(modules)


def module_entries(modules):
    """cpio entries of kernel modules ([(name, data)]) and the load-order
    file the agents read, in the given (dependency) order."""
    entries = [cpio.regular('lib/modules/%s.ko' % name, data)
               for name, data in modules]
    names = ''.join('%s.ko\n' % name for name, _data in modules)
    entries.append(cpio.regular('lib/modules/load-order', names.encode()))
    return entries


def init_script():
    with open(os.path.join(os.path.dirname(__file__), 'init.sh'),
              'rb') as f:
        return f.read()


def build(dest, kernel_package=DEFAULT_KERNEL_PACKAGE, kernel_deb=None,
          busybox=BUSYBOX, log=print, minimal=False,
          kernel_cache=DEFAULT_KERNEL_CACHE):
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='nova-clear-build-') as work:
        if kernel_deb is None:
            package = resolve_kernel_package(kernel_package)
            log('downloading %s' % package)
            kernel_deb = download_deb(package, work)
        tree = os.path.join(work, 'tree')
        _run(['dpkg-deb', '-x', kernel_deb, tree])
        boot = os.path.join(tree, 'boot')
        vmlinuz = [f for f in os.listdir(boot) if f.startswith('vmlinuz-')]
        if len(vmlinuz) != 1:
            raise BuildError('%s holds no single kernel' % kernel_deb)
        release = vmlinuz[0][len('vmlinuz-'):]
        config = kernel_config(os.path.join(boot, 'config-' + release))
        moddir = os.path.join(tree, 'lib', 'modules', release)
        index = index_modules(moddir)
        cache = {}

        def data_of(name):
            if name not in cache:
                cache[name] = read_module(index[name])
            return cache[name]

        order = order_modules(WANTED_MODULES, index,
                              builtin_modules(moddir),
                              lambda n: module_depends(data_of(n)))
        log('kernel %s, modules: %s' % (release, ' '.join(order)))
        with open(busybox, 'rb') as f:
            busybox_data = f.read()
        if b'linux-vdso' in busybox_data or \
                b'ld-linux' in busybox_data[:4096 * 4]:
            raise BuildError('%s is not static: install busybox-static'
                             % busybox)
        initrd = pack_initramfs(busybox_data,
                                [(n, data_of(n)) for n in order])
        manifest = write_assets(
            dest, os.path.join(boot, vmlinuz[0]), initrd, release, config)
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
            'CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES') == 'y')


def build_minimal(dest, busybox_data, kernel_cache, log=print):
    """The minimal kernel (built once per configuration) and an initramfs
    without modules: everything is built in."""
    image, release = kernel.build(kernel_cache, log=log)
    config = kernel_config(os.path.join(os.path.dirname(image), 'config'))
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
    parser.add_argument('--kernel-package', default=DEFAULT_KERNEL_PACKAGE,
                        help='Debian kernel package to take the kernel '
                             'and modules from')
    parser.add_argument('--kernel-deb',
                        help='use this already downloaded kernel .deb')
    parser.add_argument('--busybox', default=BUSYBOX,
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
    except (BuildError, kernel.KernelBuildError, OSError) as e:
        print('nova-clear-build-guest: error: %s' % e, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
