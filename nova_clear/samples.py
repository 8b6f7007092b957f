"""Sample images: guest assets, small disk images and container images.

What the functional tests, the boot benchmarks, ``tools/allinone`` and the
devstack plugin boot.  Each is built once per machine into a cache
directory (``cache=``, else ``$NOVA_CLEAR_SAMPLE_CACHE``, else
``/var/tmp/nova-clear-samples``) under a file lock of its own, so parallel
processes share them and a half-built file is never seen.

The disk images hold a static busybox and an init that behaves like a small
distribution: it handles the ACPI power button (clean shutdown), prints
``disk-init: up on <hostname>`` and keeps running.  The container images
(buildah, offline, from scratch) run CONTAINER_CMD.

    nova-clear-sample-images [--cache DIR] disk [fs|part|qcow2]
    nova-clear-sample-images [--cache DIR] container [docker|oci]
    nova-clear-sample-images [--cache DIR] ssh [disk|container]
    nova-clear-sample-images [--cache DIR] assets [--dest DIR]

print the path of what they built (or found already built).
"""

import argparse
import fcntl
import glob
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys

from nova_clear.buildtools import debian
from nova_clear.guest import build
from nova_clear.guest import kernel

DEFAULT_CACHE = '/var/tmp/nova-clear-samples'
MiB = 1024 * 1024
DISK_KINDS = ('fs', 'part', 'qcow2')
CONTAINER_KINDS = ('docker', 'oci')
# in the assets directory: what the assets were built from
ASSETS_STAMP = 'sample-stamp'

DISK_INIT = b'''#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# busybox acpid runs /etc/acpi/PWRF/00000080 on the power button
mkdir -p /etc/acpi/PWRF
ln -sf /sbin/clean-poweroff /etc/acpi/PWRF/00000080
acpid -c /etc/acpi -l /dev/null
echo "disk-init: up on $(hostname)"
while true; do sleep 3600; done
'''

CLEAN_POWEROFF = b'''#!/bin/sh
echo "disk-init: power button, shutting down" > /dev/console
sync
poweroff -f
'''

CONTAINER_CMD = ('echo "container says: $GREETING from $(pwd) as uid $(id -u)"'
                 '; cat /data/greeting; exit 3')


def cache_dir(cache=None):
    """The build cache: ``cache``, else $NOVA_CLEAR_SAMPLE_CACHE, else
    DEFAULT_CACHE."""
    return cache or os.environ.get('NOVA_CLEAR_SAMPLE_CACHE') or \
        DEFAULT_CACHE


def _locked(cache, name):
    os.makedirs(cache, exist_ok=True)
    f = open(os.path.join(cache, name + '.lock'), 'a')
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


def guest_assets(dest=None, cache=None):
    """A real assets directory built by nova-clear-build-guest's code,
    into ``dest`` (default ``<cache>/assets``).

    With Debian's linux-source installed it holds the minimal kernel too
    (built once, cached by configuration), which the driver then prefers,
    as it does in production.
    """
    cache = cache_dir(cache)
    dest = dest or os.path.join(cache, 'assets')
    minimal = bool(glob.glob(kernel.SOURCE_GLOB))
    # Rebuilt whenever the agent, the builder or the kernel config changed.
    digest = hashlib.sha256(build.init_script())
    for path in (build.__file__, debian.__file__, kernel.FRAGMENT):
        with open(path, 'rb') as f:
            digest.update(f.read())
    stamp = '%s minimal=%s' % (digest.hexdigest(), minimal)
    stamp_file = os.path.join(dest, ASSETS_STAMP)
    with _locked(cache, 'assets'):
        current = None
        if os.path.exists(stamp_file):
            with open(stamp_file) as f:
                current = f.read()
        if current != stamp or \
                not os.path.exists(os.path.join(dest, 'manifest.json')):
            build.build(dest, log=lambda *a: None, minimal=minimal)
            with open(stamp_file, 'w') as f:
                f.write(stamp)
    return dest


def _rootfs(path):
    for d in ('bin', 'sbin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root'):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy(debian.BUSYBOX, os.path.join(path, 'bin', 'busybox'))
    for applet in ('sh', 'echo', 'mount', 'sleep', 'hostname', 'acpid',
                   'poweroff', 'sync', 'mkdir', 'cat', 'ls', 'ln', 'trap'):
        os.symlink('busybox', os.path.join(path, 'bin', applet))
    for name, data in (('init', DISK_INIT),
                       ('clean-poweroff', CLEAN_POWEROFF)):
        p = os.path.join(path, 'sbin', name)
        with open(p, 'wb') as f:
            f.write(data)
        os.chmod(p, 0o755)


def _mkfs(path, size):
    tree = path + '.tree'
    shutil.rmtree(tree, ignore_errors=True)
    _rootfs(tree)
    if os.path.exists(path):
        os.unlink(path)
    # stdout too: mkfs.ext4 -q still says "Creating regular file", and the
    # command line prints the path only
    subprocess.run(['mkfs.ext4', '-q', '-F', '-d', tree, path,
                    str(size // 1024)], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.rmtree(tree)


def mbr(start_sector, sectors):
    """A master boot record (no boot code) with one bootable Linux
    partition of ``sectors`` 512-byte sectors from ``start_sector``."""
    entry = struct.pack('<B3sB3sII', 0x80, b'\xff\xff\xfe', 0x83,
                        b'\xff\xff\xfe', start_sector, sectors)
    record = bytearray(512)
    record[0x1BE:0x1BE + 16] = entry
    record[510:512] = b'\x55\xaa'
    return bytes(record)


def disk_image(kind, cache=None):
    """Path of a sample disk image, built once.

    'fs' is a bare ext4 filesystem (raw), 'part' a raw disk with an MBR
    and one ext4 partition, 'qcow2' the bare filesystem as qcow2.
    """
    if kind not in DISK_KINDS:
        raise ValueError(kind)
    cache = cache_dir(cache)
    return built_once(cache, 'image-' + kind, 'image-%s' % kind,
                      lambda tmp: _build_disk(kind, tmp, cache))


def built_once(cache, name, filename, build):
    """``<cache>/<filename>``, made by ``build(tmp)`` into a temporary
    name the first time, under the lock ``name`` (parallel callers wait)."""
    path = os.path.join(cache, filename)
    with _locked(cache, name):
        if not os.path.exists(path):
            build(path + '.tmp')
            os.replace(path + '.tmp', path)
    return path


def _build_disk(kind, tmp, cache):
    if kind == 'fs':
        _mkfs(tmp, 48 * MiB)
    elif kind == 'part':
        fs = tmp + '.fs'
        _mkfs(fs, 48 * MiB)
        with open(tmp, 'wb') as out, open(fs, 'rb') as src:
            out.write(mbr(2048, os.path.getsize(fs) // 512))
            out.seek(MiB)
            shutil.copyfileobj(src, out)
        os.unlink(fs)
    else:
        subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O',
                        'qcow2', disk_image('fs', cache), tmp],
                       check=True, stdout=subprocess.DEVNULL)


def container_image(kind, cache=None):
    """A container image made by buildah (Debian's), offline, from scratch.

    ``kind`` is 'docker' (docker-archive, as ``docker save`` writes) or
    'oci' (an OCI image-layout tarball).  It holds static busybox, a user
    ``app`` (uid 1000) and /data/greeting; its config runs CONTAINER_CMD
    through ``/bin/sh -c`` as ``app`` in /data with GREETING=hello.
    """
    if kind not in CONTAINER_KINDS:
        raise ValueError(kind)
    cache = cache_dir(cache)
    return built_once(cache, 'container-' + kind,
                      'container-%s.tar' % kind,
                      lambda tmp: _build_container(kind, tmp))


def _build_container(kind, tmp):
    work = tmp + '.work'
    shutil.rmtree(work, ignore_errors=True)
    tree = os.path.join(work, 'tree')
    for d in ('bin', 'etc', 'data', 'tmp'):
        os.makedirs(os.path.join(tree, d))
    shutil.copy(debian.BUSYBOX, os.path.join(tree, 'bin', 'busybox'))
    for applet in ('sh', 'echo', 'id', 'pwd', 'cat', 'sleep', 'ls'):
        os.symlink('busybox', os.path.join(tree, 'bin', applet))
    with open(os.path.join(tree, 'etc', 'passwd'), 'w') as f:
        f.write('root:x:0:0:root:/:/bin/sh\n'
                'app:x:1000:1000:app:/data:/bin/sh\n')
    with open(os.path.join(tree, 'etc', 'group'), 'w') as f:
        f.write('root:x:0:\napp:x:1000:\n')
    with open(os.path.join(tree, 'data', 'greeting'), 'w') as f:
        f.write('greeting file from the image\n')
    buildah_commit(work, tree, tmp, kind, {
        'entrypoint': ['/bin/sh', '-c'], 'cmd': [CONTAINER_CMD],
        'env': ['GREETING=hello'], 'workingdir': '/data', 'user': 'app'},
        'clear/test:1')


def buildah_commit(work, tree, dest, kind, config, ref):
    """An image of ``tree`` (copied to /) with ``config`` (entrypoint,
    cmd, env, workingdir, user) into ``dest``: ``kind`` 'docker'
    (docker-archive) or 'oci' (oci-archive), tagged ``ref``.  buildah's
    storage lives in ``work``, which is removed."""
    buildah = ['buildah', '--root', os.path.join(work, 'storage'),
               '--runroot', os.path.join(work, 'run'),
               '--storage-driver', 'vfs']

    def run(*args):
        return subprocess.run(buildah + list(args), check=True,
                              capture_output=True,
                              text=True).stdout.strip()
    ctr = run('from', 'scratch')
    run('copy', ctr, tree + '/', '/')
    opts = ['--entrypoint', json.dumps(config['entrypoint']),
            '--cmd', json.dumps(config['cmd']),
            '--workingdir', config['workingdir'], '--user', config['user']]
    for env in config['env']:
        opts += ['--env', env]
    run('config', *opts, ctr)
    target = ('docker-archive:%s:%s' if kind == 'docker'
              else 'oci-archive:%s:%s') % (dest, ref)
    run('commit', '--format', 'docker' if kind == 'docker' else 'oci',
        ctr, target)
    run('rm', ctr)
    subprocess.run(['rm', '-rf', work], check=False)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='nova-clear-sample-images',
        description='Build (once, cached) a sample image and print its '
                    'path.')
    parser.add_argument('--cache', help='the build cache (default: '
                        '$NOVA_CLEAR_SAMPLE_CACHE, else %s)' % DEFAULT_CACHE)
    sub = parser.add_subparsers(dest='what', required=True)
    disk = sub.add_parser('disk', help='a disk image with busybox and an '
                          'init that prints "disk-init: up on <hostname>"')
    disk.add_argument('kind', nargs='?', default='fs', choices=DISK_KINDS,
                      help='fs: bare ext4 (raw), part: MBR + ext4 '
                           'partition (raw), qcow2: fs as qcow2')
    ctr = sub.add_parser('container', help='a container image (buildah) '
                         'that prints "container says: ..." and exits 3')
    ctr.add_argument('kind', nargs='?', default='docker',
                     choices=CONTAINER_KINDS)
    ssh = sub.add_parser('ssh', help='an image whose root logs in over '
                         'SSH (dropbear) with the instance\'s key pair, '
                         'as tempest\'s validation wants '
                         '(nova_clear.sample_ssh)')
    ssh.add_argument('kind', nargs='?', default='disk',
                     choices=('disk', 'container'))
    assets = sub.add_parser('assets', help='guest kernel + agent '
                            'initramfs (and the minimal kernel when '
                            'linux-source is installed)')
    assets.add_argument('--dest', help='default: <cache>/assets')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.what == 'disk':
        path = disk_image(args.kind, args.cache)
    elif args.what == 'container':
        path = container_image(args.kind, args.cache)
    elif args.what == 'ssh':
        from nova_clear import sample_ssh
        path = (sample_ssh.disk_image(args.cache) if args.kind == 'disk'
                else sample_ssh.container_image(args.cache))
    else:
        path = guest_assets(args.dest, args.cache)
    print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
