"""A Debian kernel package, used without installing it.

``apt-get download`` fetches it (following a metapackage such as
``linux-image-cloud-amd64`` to the real package), ``dpkg-deb -x`` unpacks
it into a work directory; from there come the kernel, its release and
configuration, and the kernel modules an initramfs needs, in load order
(dependencies from each module's ``.modinfo``) and as cpio entries with
the ``load-order`` file the initramfs's init reads.
"""

import dataclasses
import lzma
import os
import re
import subprocess

import zstandard

from nova_clear.buildtools import cpio
from nova_clear.buildtools.errors import BuildError

DEFAULT_KERNEL_PACKAGE = 'linux-image-cloud-amd64'
BUSYBOX = '/bin/busybox'    # busybox-static's


def run(cmd, cwd=None):
    """stdout of ``cmd``, or :class:`BuildError` with its stderr."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError('%s failed (%d): %s' % (' '.join(cmd),
                                                 proc.returncode,
                                                 proc.stderr.strip()))
    return proc.stdout


# -- the package ------------------------------------------------------------
def resolve_kernel_package(name):
    """Follow a metapackage (linux-image-cloud-amd64) to the real one."""
    out = run(['apt-cache', 'depends', '--important', name])
    for line in out.splitlines():
        m = re.match(r'\s*Depends:\s*(linux-image-\S+)', line)
        if m:
            return m.group(1)
    return name


def download_deb(package, workdir):
    run(['apt-get', 'download', package], cwd=workdir)
    debs = [f for f in os.listdir(workdir)
            if f.startswith(package + '_') and f.endswith('.deb')]
    if not debs:
        raise BuildError('apt-get download %s produced no .deb' % package)
    return os.path.join(workdir, sorted(debs)[-1])


def fetch_kernel_deb(work, kernel_package=DEFAULT_KERNEL_PACKAGE, deb=None,
                     log=print):
    """``deb`` if given, else ``kernel_package`` downloaded into ``work``."""
    if deb is not None:
        return deb
    package = resolve_kernel_package(kernel_package)
    log('downloading %s' % package)
    return download_deb(package, work)


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A kernel package unpacked into a work directory."""

    release: str
    vmlinuz: str        # path of the kernel image
    boot: str           # its /boot: config-<release>, ...
    moddir: str         # its /lib/modules/<release>


def unpack_kernel(deb, work):
    """``dpkg-deb -x`` of ``deb`` into ``work/tree``, holding one kernel."""
    tree = os.path.join(work, 'tree')
    run(['dpkg-deb', '-x', deb, tree])
    boot = os.path.join(tree, 'boot')
    vmlinuz = [f for f in os.listdir(boot) if f.startswith('vmlinuz-')]
    if len(vmlinuz) != 1:
        raise BuildError('%s holds no single kernel' % deb)
    release = vmlinuz[0][len('vmlinuz-'):]
    return Kernel(release, os.path.join(boot, vmlinuz[0]), boot,
                  os.path.join(tree, 'lib', 'modules', release))


def kernel_config(path):
    config = {}
    with open(path) as f:
        for line in f:
            m = re.match(r'(CONFIG_\w+)=(.*)', line.strip())
            if m:
                config[m.group(1)] = m.group(2)
    return config


# -- kernel modules ---------------------------------------------------------
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


def load_modules(moddir, wanted):
    """[(name, data)] of the ``wanted`` modules not built into the kernel
    and their dependencies, in load order; each module read once."""
    index = index_modules(moddir)
    cache = {}

    def data_of(name):
        if name not in cache:
            cache[name] = read_module(index[name])
        return cache[name]

    order = order_modules(wanted, index, builtin_modules(moddir),
                          lambda n: module_depends(data_of(n)))
    return [(n, data_of(n)) for n in order]


def module_entries(modules):
    """cpio entries of kernel modules ([(name, data)]) and the load-order
    file the initramfs's init reads, in the given (dependency) order."""
    entries = [cpio.regular('lib/modules/%s.ko' % name, data)
               for name, data in modules]
    names = ''.join('%s.ko\n' % name for name, _data in modules)
    entries.append(cpio.regular('lib/modules/load-order', names.encode()))
    return entries
