"""Root-only work of nova-clear, run in an oslo.privsep daemon.

nova-compute runs unprivileged; unpacking container layers with their
owners and extended attributes, and packing the result into a filesystem
image, needs root.  The daemon is configured in ``[clear_sys_admin]``
(``helper_command``), like nova's ``[nova_sys_admin]``; it must read
nova-compute's configuration files (oslo.privsep passes them when
``helper_command`` is unset, as devstack runs it; otherwise give them with
``--config-file``), since it only works inside the configured image cache.

The entrypoint is narrow: it takes the archive and the name of the packed
file, checks both resolve inside ``<image cache>/rootfs``, opens them
without following links (the packed file with ``O_EXCL``), makes its own
work directory under a root-only ``0700`` parent (setuid files and file
capabilities of images are never reachable by other users), applies the
layers in a child confined to that directory
(:mod:`nova_clear.images.unpack`) and runs ``mkfs.ext4`` on it.  Parsing
and validation happened before, unprivileged
(:func:`nova_clear.images.oci.verify`).
"""

import errno
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import uuid

import nova.conf
from oslo_privsep import capabilities
from oslo_privsep import priv_context

from nova_clear import conf as clear_conf
from nova_clear import exception as clear_exc
from nova_clear.images import unpack

CONF = nova.conf.CONF
clear_conf.register_opts(CONF)

clear_admin_pctxt = priv_context.PrivContext(
    'nova_clear',
    cfg_section='clear_sys_admin',
    pypath=__name__ + '.clear_admin_pctxt',
    capabilities=[capabilities.CAP_CHOWN,
                  capabilities.CAP_DAC_OVERRIDE,
                  capabilities.CAP_DAC_READ_SEARCH,
                  capabilities.CAP_FOWNER,
                  capabilities.CAP_SETFCAP,
                  capabilities.CAP_SYS_ADMIN],
)

MiB = 1024 * 1024
WORK_DIR = '.unpack'
_PART = re.compile(r'^[0-9a-f]{64}\.ext4\.part$')
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PathRefused(PermissionError):
    pass


def rootfs_image_size(content_bytes, entries):
    """Bytes of the ext4 image that holds ``content_bytes`` in ``entries``
    files: data, 4 KiB per entry for blocks and inodes, journal, slack."""
    size = content_bytes * 1.15 + entries * 4096 + 48 * MiB
    return int((size + MiB - 1) // MiB * MiB)


def _inside(path, top):
    real = os.path.realpath(path)
    return real if real.startswith(top.rstrip('/') + '/') else None


def check_paths(cache, archive_path, dest):
    """The real rootfs directory, archive path and part name, or
    :class:`PathRefused`: both must resolve inside ``cache``, the part be
    ``.../rootfs/<sha256>.ext4.part`` there."""
    top = os.path.realpath(cache)
    archive = _inside(archive_path, top)
    if archive is None:
        raise PathRefused('%s is not inside the image cache %s (does '
                          '[clear_sys_admin] helper_command pass '
                          'nova-compute\'s --config-file?)' %
                          (archive_path, top))
    rootfs_dir = _inside(os.path.dirname(os.path.abspath(dest)), top)
    name = os.path.basename(dest)
    if rootfs_dir is None or os.path.basename(rootfs_dir) != 'rootfs' or \
            not _PART.match(name):
        raise PathRefused('%s is not <image cache>/rootfs/<sha256>.ext4.part'
                          ' (image cache %s)' % (dest, top))
    return rootfs_dir, archive, name


def _work_dir(rootfs_fd):
    """An fd of ``<rootfs>/.unpack``, root-only, whatever was there."""
    try:
        os.mkdir(WORK_DIR, 0o700, dir_fd=rootfs_fd)
    except FileExistsError:
        pass
    fd = os.open(WORK_DIR, _DIR_FLAGS, dir_fd=rootfs_fd)
    os.fchown(fd, 0, 0)
    os.fchmod(fd, 0o700)
    return fd


def _unpack(archive_fd, root_fd, image_id, limits):
    """Run the confined child; (content_bytes, entries, peak_rss_kib)."""
    request = json.dumps({'image_id': image_id, 'limits': limits})
    proc = subprocess.run(
        ['unshare', '--mount', '--propagation', 'private', sys.executable,
         '-m', unpack.__name__, '--archive-fd', str(archive_fd),
         '--root-fd', str(root_fd)],
        input=request, pass_fds=(archive_fd, root_fd), capture_output=True,
        text=True)
    try:
        reply = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError('unpacking %s failed (exit %d): %s' %
                           (image_id, proc.returncode,
                            proc.stderr.strip()[-2000:]))
    if 'refused' in reply:
        raise clear_exc.LayerRefused(reply['refused'])
    if 'enospc' in reply:
        raise OSError(errno.ENOSPC, reply['enospc'])
    return reply['content_bytes'], reply['entries'], reply['peak_rss_kib']


def _mkfs(image_id, root_fd, dest_fd, entries):
    # both by descriptor: a path could be swapped by the cache's owner
    try:
        subprocess.run(
            ['mkfs.ext4', '-q', '-F', '-L', 'clear-rootfs',
             '-N', str(entries + 1024), '-d', '.',
             '/proc/self/fd/%d' % dest_fd],
            check=True, capture_output=True, text=True,
            cwd='/proc/self/fd/%d' % root_fd, pass_fds=(root_fd, dest_fd))
    except subprocess.CalledProcessError as e:
        if 'No space left on device' in (e.stderr or ''):
            raise OSError(errno.ENOSPC, 'mkfs.ext4: %s' % e.stderr.strip())
        raise clear_exc.InvalidContainerImage(
            image_id=image_id, reason='packing the root filesystem failed: '
            '%s' % e.stderr.strip())


def build_rootfs_in(cache, archive_path, image_id, dest, limits):
    """Unpack the archive and pack it into ``dest`` (``.part``, created
    read-only, owned by the owner of the cache's rootfs directory).

    Returns ``{'content_bytes', 'entries', 'unpack_peak_rss_kib'}``.  On
    any failure nothing is left: neither the work directory nor ``dest``.
    """
    rootfs_dir, archive, name = check_paths(cache, archive_path, dest)
    fds = []

    def keep(fd):
        fds.append(fd)
        return fd

    work_fd = tmp = None
    made_dest = False
    try:
        rootfs_fd = keep(os.open(rootfs_dir, _DIR_FLAGS))
        archive_fd = keep(os.open(archive, os.O_RDONLY | os.O_NOFOLLOW |
                                  os.O_CLOEXEC))
        if not stat.S_ISREG(os.fstat(archive_fd).st_mode):
            raise PathRefused('%s is not a regular file' % archive_path)
        work_fd = keep(_work_dir(rootfs_fd))
        tmp = name[:12] + '.' + uuid.uuid4().hex
        os.mkdir(tmp, 0o700, dir_fd=work_fd)
        root_fd = keep(os.open(tmp, _DIR_FLAGS, dir_fd=work_fd))
        content, entries, rss = _unpack(archive_fd, root_fd, image_id,
                                        limits)
        dest_fd = keep(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                               os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                               dir_fd=rootfs_fd))
        made_dest = True
        os.ftruncate(dest_fd, rootfs_image_size(content, entries))
        _mkfs(image_id, root_fd, dest_fd, entries)
        owner = os.fstat(rootfs_fd)
        os.fchown(dest_fd, owner.st_uid, owner.st_gid)
        os.fchmod(dest_fd, 0o444)
        os.fsync(dest_fd)
        return {'content_bytes': content, 'entries': entries,
                'unpack_peak_rss_kib': rss}
    except BaseException:
        if made_dest:
            os.unlink(name, dir_fd=fds[0])
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, dir_fd=work_fd, ignore_errors=True)
        for fd in fds:
            os.close(fd)


@clear_admin_pctxt.entrypoint
def build_rootfs(archive_path, image_id, dest, limits):
    """:func:`build_rootfs_in` the configured
    image cache (keeps owners)."""
    return build_rootfs_in(clear_conf.image_cache_path(CONF), archive_path,
                           image_id, dest, limits)
