"""Real test inputs: guest assets and small disk images.

Built once per machine into ``$NOVA_CLEAR_TEST_CACHE`` (default
``/var/tmp/nova-clear-test``) under a file lock, so parallel test workers
share them.  The disk images hold a static busybox and an init that behaves
like a small distribution: it handles the ACPI power button (clean
shutdown), prints a marker and keeps running.
"""

import fcntl
import glob
import hashlib
import json
import os
import shutil
import struct
import subprocess

from nova_clear.guest import build
from nova_clear.guest import kernel

CACHE = os.environ.get('NOVA_CLEAR_TEST_CACHE', '/var/tmp/nova-clear-test')
MiB = 1024 * 1024

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


def _locked(name):
    os.makedirs(CACHE, exist_ok=True)
    f = open(os.path.join(CACHE, name + '.lock'), 'a')
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


def guest_assets():
    """A real assets directory built by nova-clear-build-guest.

    With Debian's linux-source installed it holds the minimal kernel too
    (built once, cached by configuration), which the driver then prefers,
    as it does in production.
    """
    dest = os.environ.get('NOVA_CLEAR_TEST_ASSETS') or \
        os.path.join(CACHE, 'assets')
    minimal = bool(glob.glob(kernel.SOURCE_GLOB))
    # Rebuilt whenever the agent, the builder or the kernel config changed.
    digest = hashlib.sha256(build.init_script())
    for path in (build.__file__, kernel.FRAGMENT):
        with open(path, 'rb') as f:
            digest.update(f.read())
    stamp = '%s minimal=%s' % (digest.hexdigest(), minimal)
    stamp_file = os.path.join(dest, 'test-stamp')
    with _locked('assets'):
        current = open(stamp_file).read() if os.path.exists(stamp_file) \
            else None
        if current != stamp or \
                not os.path.exists(os.path.join(dest, 'manifest.json')):
            build.build(dest, log=lambda *a: None, minimal=minimal)
            with open(stamp_file, 'w') as f:
                f.write(stamp)
    return dest


def _rootfs(path):
    for d in ('bin', 'sbin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root'):
        os.makedirs(os.path.join(path, d), exist_ok=True)
    shutil.copy(build.BUSYBOX, os.path.join(path, 'bin', 'busybox'))
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
    subprocess.run(['mkfs.ext4', '-q', '-F', '-d', tree, path,
                    str(size // 1024)], check=True)
    shutil.rmtree(tree)


def _mbr(start_sector, sectors):
    entry = struct.pack('<B3sB3sII', 0x80, b'\xff\xff\xfe', 0x83,
                        b'\xff\xff\xfe', start_sector, sectors)
    mbr = bytearray(512)
    mbr[0x1BE:0x1BE + 16] = entry
    mbr[510:512] = b'\x55\xaa'
    return bytes(mbr)


def disk_image(kind):
    """Path of a test image, built once.

    'fs' is a bare ext4 filesystem (raw), 'part' a raw disk with an MBR
    and one ext4 partition, 'qcow2' the bare filesystem as qcow2.
    """
    path = os.path.join(CACHE, 'image-%s' % kind)
    with _locked('image-' + kind):
        if os.path.exists(path):
            return path
        tmp = path + '.tmp'
        if kind == 'fs':
            _mkfs(tmp, 48 * MiB)
        elif kind == 'part':
            fs = tmp + '.fs'
            _mkfs(fs, 48 * MiB)
            with open(tmp, 'wb') as out, open(fs, 'rb') as src:
                out.write(_mbr(2048, os.path.getsize(fs) // 512))
                out.seek(MiB)
                shutil.copyfileobj(src, out)
            os.unlink(fs)
        elif kind == 'qcow2':
            subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O',
                            'qcow2', disk_image('fs'), tmp], check=True)
        else:
            raise ValueError(kind)
        os.replace(tmp, path)
    return path


CONTAINER_CMD = ('echo "container says: $GREETING from $(pwd) as uid $(id -u)"'
                 '; cat /data/greeting; exit 3')


def container_image(kind):
    """A container image made by buildah (Debian's), offline, from scratch.

    ``kind`` is 'docker' (docker-archive, as ``docker save`` writes) or
    'oci' (an OCI image-layout tarball).  It holds static busybox, a user
    ``app`` (uid 1000) and /data/greeting; its config runs CONTAINER_CMD
    through ``/bin/sh -c`` as ``app`` in /data with GREETING=hello.
    """
    path = os.path.join(CACHE, 'container-%s.tar' % kind)
    with _locked('container-' + kind):
        if os.path.exists(path):
            return path
        work = path + '.work'
        shutil.rmtree(work, ignore_errors=True)
        tree = os.path.join(work, 'tree')
        for d in ('bin', 'etc', 'data', 'tmp'):
            os.makedirs(os.path.join(tree, d))
        shutil.copy(build.BUSYBOX, os.path.join(tree, 'bin', 'busybox'))
        for applet in ('sh', 'echo', 'id', 'pwd', 'cat', 'sleep', 'ls'):
            os.symlink('busybox', os.path.join(tree, 'bin', applet))
        with open(os.path.join(tree, 'etc', 'passwd'), 'w') as f:
            f.write('root:x:0:0:root:/:/bin/sh\n'
                    'app:x:1000:1000:app:/data:/bin/sh\n')
        with open(os.path.join(tree, 'etc', 'group'), 'w') as f:
            f.write('root:x:0:\napp:x:1000:\n')
        with open(os.path.join(tree, 'data', 'greeting'), 'w') as f:
            f.write('greeting file from the image\n')
        buildah = ['buildah', '--root', os.path.join(work, 'storage'),
                   '--runroot', os.path.join(work, 'run'),
                   '--storage-driver', 'vfs']

        def run(*args):
            return subprocess.run(buildah + list(args), check=True,
                                  capture_output=True,
                                  text=True).stdout.strip()
        ctr = run('from', 'scratch')
        run('copy', ctr, tree + '/', '/')
        run('config', '--entrypoint', '["/bin/sh", "-c"]',
            '--cmd', json.dumps([CONTAINER_CMD]), '--env', 'GREETING=hello',
            '--workingdir', '/data', '--user', 'app', ctr)
        dest = ('docker-archive:%s.tmp:clear/test:1' if kind == 'docker'
                else 'oci-archive:%s.tmp:clear/test:1') % path
        run('commit', '--format', 'docker' if kind == 'docker' else 'oci',
            ctr, dest)
        run('rm', ctr)
        os.replace(path + '.tmp', path)
        subprocess.run(['rm', '-rf', work], check=False)
    return path
