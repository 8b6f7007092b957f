"""Sample images that run an SSH server, as tempest's images do (cirros).

Tempest's validation (``[validation] run_validation``) logs in to every
server it makes, runs shell commands (``hostname``, ``lsblk``, ``blkid -L
config-2``, ``sudo mount``, ``ip addr`` ...) and reads the config drive.
These images give it what cirros gives it, built once per machine from
this host's Debian binaries (nothing downloaded):

* a static busybox with all its applets in ``/bin``;
* dropbear (``dropbear-bin``) and util-linux's ``lsblk`` and ``blkid``
  (busybox has no ``lsblk``, and its ``blkid`` knows no ``-L``) in
  ``/usr/sbin``/``/usr/bin``, each with the shared libraries ``ldd`` names
  copied beside them;
* ``/usr/bin/sudo``: the login is root, so it only runs its command;
* root (``/root``, shell ``/bin/sh``), who logs in with the instance's key
  pair and nothing else (no password).

:func:`disk_image` is a bare ext4 filesystem whose ``/sbin/init`` reads
the key pair from the config drive (label ``config-2``,
``openstack/latest/meta_data.json``; upload it with
``img_config_drive=mandatory``), starts dropbear and prints
``ssh-init: up on <hostname>``.  :func:`container_image` (docker-archive,
buildah, offline) runs dropbear in the foreground as its command; the
agent installs the instance's key pair in ``/root/.ssh``.
"""

import hashlib
import os
import re
import shutil
import subprocess

from nova_clear.buildtools import debian
from nova_clear import samples

MiB = samples.MiB
DROPBEAR = '/usr/sbin/dropbear'
# (host path, path in the image)
ELF_BINARIES = ((DROPBEAR, 'usr/sbin/dropbear'),
                ('/usr/bin/lsblk', 'usr/bin/lsblk'),
                ('/usr/sbin/blkid', 'usr/sbin/blkid'))
# util-linux's, not busybox's
NOT_FROM_BUSYBOX = ('blkid', 'lsblk', 'sudo')
DISK_LINE = 'ssh-init: up on'
CONTAINER_LINE = 'ssh-container: dropbear on port 22'

SUDO = b'''#!/bin/sh
# the login is root: run the command (options before it are dropped)
while [ $# -gt 0 ]; do
    case "$1" in
        --) shift; break ;;
        -*) shift ;;
        *) break ;;
    esac
done
exec "$@"
'''

# the key pair: the public keys in meta_data.json's "public_keys" object,
# nothing from elsewhere (the server's metadata); busybox has no JSON
# parser: sed takes the object (its values hold no "}"), grep the keys
# ("<type> AAAA<base64>": a key blob starts with its type's length)
PUBLIC_KEYS_SED = r's/.*"public_keys": *{\([^}]*\)}.*/\1/p'
KEY_PATTERN = (r'(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp(256|384|521)) '
               r'AAAA[A-Za-z0-9+/=]+')
# a shell function: meta_data.json on stdin, authorized_keys on stdout
KEYS_FUNCTION = ("public_keys() { sed -n '%s' | grep -o -E '%s' | "
                 "sort -u; }" % (PUBLIC_KEYS_SED, KEY_PATTERN))
SSH_INIT = b'''#!/bin/sh
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /run /tmp && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mkdir -p /etc/acpi/PWRF
ln -sf /sbin/clean-poweroff /etc/acpi/PWRF/00000080
acpid -c /etc/acpi -l /dev/null
@KEYS_FUNCTION@
mkdir -p /root/.ssh /etc/dropbear /run/config-drive
chmod 700 /root/.ssh
i=0
until dev=$(blkid -L config-2 -o device) || [ $i -ge 50 ]; do
    usleep 100000; i=$((i + 1))
done
if [ -n "$dev" ] && mount -o ro "$dev" /run/config-drive; then
    public_keys < /run/config-drive/openstack/latest/meta_data.json \\
        > /root/.ssh/authorized_keys
    chmod 600 /root/.ssh/authorized_keys
    umount /run/config-drive
    n=$(wc -l < /root/.ssh/authorized_keys)
    echo "ssh-init: $n key(s) from the config drive $dev"
else
    echo "ssh-init: no config drive (label config-2): nobody can log in"
fi
dropbear -R -E -p 22 -P /run/dropbear.pid
echo "ssh-init: up on $(hostname)"
while true; do sleep 3600; done
'''.replace(b'@KEYS_FUNCTION@', KEYS_FUNCTION.encode())

CONTAINER_CMD = ('mkdir -p /dev/pts && mount -t devpts devpts /dev/pts '
                 '2>/dev/null; mkdir -p /etc/dropbear; echo "%s"; '
                 'exec /usr/sbin/dropbear -R -F -E -p 22' % CONTAINER_LINE)


def shared_libraries(binary):
    """Absolute paths of the shared libraries ``ldd`` lists for
    ``binary`` (the dynamic loader included)."""
    out = subprocess.run(['ldd', binary], check=True, capture_output=True,
                         text=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r'(/\S+) \(0x', line)
        if m:
            libs.append(m.group(1))
    return libs


def copy_elf(tree, source, dest):
    """``source`` to ``<tree>/<dest>``, with its libraries under their own
    paths."""
    for path in [source] + shared_libraries(source):
        target = os.path.join(tree, dest if path == source
                              else path.lstrip('/'))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(os.path.realpath(path), target)


def _write(tree, rel, data, mode=0o644):
    path = os.path.join(tree, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, mode)


def busybox_applets():
    out = subprocess.run([debian.BUSYBOX, '--list'], check=True,
                         capture_output=True, text=True).stdout
    return [a for a in out.split() if a not in ('busybox',) +
            NOT_FROM_BUSYBOX]


def ssh_tree(tree):
    """The root filesystem both images share."""
    if not os.path.exists(DROPBEAR):
        raise FileNotFoundError('%s is missing: install dropbear-bin'
                                % DROPBEAR)
    for d in ('bin', 'sbin', 'etc/dropbear', 'proc', 'sys', 'dev', 'tmp',
              'run', 'mnt', 'root', 'usr/bin', 'usr/sbin'):
        os.makedirs(os.path.join(tree, d), exist_ok=True)
    os.chmod(os.path.join(tree, 'root'), 0o700)
    os.chmod(os.path.join(tree, 'tmp'), 0o1777)
    shutil.copy(debian.BUSYBOX, os.path.join(tree, 'bin', 'busybox'))
    for applet in busybox_applets():
        os.symlink('busybox', os.path.join(tree, 'bin', applet))
    for source, dest in ELF_BINARIES:
        copy_elf(tree, source, dest)
    _write(tree, 'usr/bin/sudo', SUDO, 0o755)
    _write(tree, 'etc/passwd', b'root:*:0:0:root:/root:/bin/sh\n')
    _write(tree, 'etc/group', b'root:x:0:\n')
    _write(tree, 'etc/shells', b'/bin/sh\n')


def _build_disk(tmp):
    tree = tmp + '.tree'
    shutil.rmtree(tree, ignore_errors=True)
    ssh_tree(tree)
    _write(tree, 'sbin/init', SSH_INIT, 0o755)
    _write(tree, 'sbin/clean-poweroff', samples.CLEAN_POWEROFF, 0o755)
    subprocess.run(['mkfs.ext4', '-q', '-F', '-d', tree, tmp,
                    str(64 * MiB // 1024)], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.rmtree(tree)


def digest():
    """What the images are made of (this module's scripts and layout), in
    their file names: a change builds them again."""
    with open(__file__, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def disk_image(cache=None):
    """Path of the SSH disk image (bare ext4, raw), built once."""
    cache = samples.cache_dir(cache)
    return samples.built_once(cache, 'image-ssh', 'image-ssh-' + digest(),
                              _build_disk)


def _build_container(tmp):
    work = tmp + '.work'
    shutil.rmtree(work, ignore_errors=True)
    tree = os.path.join(work, 'tree')
    ssh_tree(tree)
    samples.buildah_commit(work, tree, tmp, 'docker', {
        'entrypoint': ['/bin/sh', '-c'], 'cmd': [CONTAINER_CMD],
        'user': 'root', 'workingdir': '/root', 'env': []},
        'clear/ssh:1')


def container_image(cache=None):
    """Path of the SSH container image (docker-archive), built once."""
    cache = samples.cache_dir(cache)
    return samples.built_once(cache, 'container-ssh',
                              'container-ssh-%s.tar' % digest(),
                              _build_container)
