"""Cold migration and resize to another host: what the destination's
``finish_migration`` does before :mod:`nova_clear.migration` grows the
disks and starts the domain (doc/source/resize.rst, "Between hosts").

The source's ``migrate_disk_and_power_off`` returns ``disk_info``
(:func:`disk_info`): the moved disks and where the source put them
(``source``: its host name, IP and the directory holding the copy).  The
files were already copied by the source, so a failed copy still rolls
back there, with the instance running again:

* the destination's IP is the source's own (the same host, or another
  compute host on this machine, as the all-in-one's two hosts): a local
  ``cp --sparse`` into the source's fresh ``<uuid>``;
* another IP: nova's remotefs helper pushes them to that path on the
  destination (``[libvirt] remote_filesystem_transport``, rsync
  recommended: it keeps the writable disks sparse, scp does not).

At the destination, :func:`adopt` moves the copy into this host's own
instances path when it is not there already (a rename, or copy and
remove across filesystems), and :func:`localize_bases` points the
instance at this host's caches: the qcow2 overlay rebased (``qemu-img
rebase -u``) on the base image fetched from Glance into this host's image
cache, the container's root filesystem rebuilt from the image into this
host's root filesystem cache with the same digest (else refused).  The
base is never copied between hosts.
"""

import errno
import os
import shutil

from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_serialization import jsonutils

import nova.conf
from nova import exception
from nova.virt import images as nova_images

from nova_clear.i18n import _
from nova_clear.images import container

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF


def disk_info(drv, files, disks):
    """The JSON migrate_disk_and_power_off returns: ``disks`` (nova's
    list of {'path', 'type'}) and the source's facts."""
    return jsonutils.dumps({
        'disks': disks,
        'source': {'host': CONF.host, 'ip': drv.get_host_ip_addr(),
                   'dir': files.dir}})


def source_of(disk_info_):
    """The ``source`` facts of ``disk_info`` (None for the list the
    driver returned before them, or nothing)."""
    try:
        info = jsonutils.loads(disk_info_) if isinstance(
            disk_info_, str) else disk_info_
    except ValueError:
        return None
    return info.get('source') if isinstance(info, dict) else None


def _same(a, b):
    return os.path.realpath(a) == os.path.realpath(b)


def adopt(instance, files, disk_info_):
    """The moved files into ``files.dir`` when the source left them in
    another directory of this machine (another host's instances path, or
    the source's path the remotefs push used).  True when they come from
    another host (their references then name the source's caches:
    :func:`localize_bases`)."""
    src = source_of(disk_info_)
    if not src:
        return False
    other = src.get('host') != CONF.host
    if not src.get('dir') or _same(src['dir'], files.dir):
        return other
    moved = src['dir']
    if not os.path.isdir(moved):
        if files.has_disks():
            return other
        raise exception.ResizeError(reason=_(
            'the disks moved from %(h)s are neither in %(s)s nor in %(d)s '
            'on %(me)s') % {'h': src.get('host'), 's': moved,
                            'd': files.dir, 'me': CONF.host})
    if os.path.isdir(files.dir):
        # a leftover of an earlier failed move here: the copy wins
        LOG.warning('Replacing %s with the moved files', files.dir,
                    instance=instance)
        shutil.rmtree(files.dir)
    os.makedirs(os.path.dirname(files.dir), exist_ok=True)
    try:
        os.rename(moved, files.dir)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EACCES, errno.EPERM):
            raise
        processutils.execute('cp', '-r', '--sparse=always', moved,
                             files.dir)
        shutil.rmtree(moved, ignore_errors=True)
        if os.path.exists(moved):
            LOG.warning('Could not remove %s after copying it', moved,
                        instance=instance)
    LOG.info('Moved files of host %(h)s adopted: %(s)s -> %(d)s',
             {'h': src.get('host'), 's': moved, 'd': files.dir},
             instance=instance)
    return other


def _under(path, top):
    top = os.path.realpath(top)
    return os.path.realpath(path).startswith(top.rstrip('/') + '/')


def localize_bases(drv, context, instance, image_meta, files):
    """Point the moved files at this host's caches (the base image or the
    root filesystem from Glance through them).  True when a reference
    changed."""
    ref = files.rootfs_ref()
    if ref is not None:
        if _under(ref, drv.rootfs_cache.path):
            return False
        expected = container.digest_of(ref)

        def claim(rootfs):
            if rootfs.digest != expected:
                raise exception.ResizeError(reason=_(
                    'image %(i)s unpacks to %(n)s on %(h)s, the instance '
                    'runs %(o)s') % {'i': image_meta.id, 'n': rootfs.digest,
                                     'h': CONF.host, 'o': expected})
            files.write_rootfs_ref(rootfs.path)
        cached = drv.image_cache.get(
            context, image_meta,
            claim=lambda c: files.write_image_ref(c.image_id))
        drv.rootfs_cache.get(cached, None, claim=claim)
        LOG.info('Root filesystem %s from this host\'s cache', expected,
                 instance=instance)
        return True
    if not os.path.exists(files.disk):
        return False
    backing = nova_images.qemu_img_info(files.disk, 'qcow2').backing_file
    if not backing or _under(backing, drv.image_cache.path):
        return False
    cached = drv.image_cache.get(
        context, image_meta,
        claim=lambda c: files.write_image_ref(c.image_id))
    processutils.execute('qemu-img', 'rebase', '-u', '-f', 'qcow2',
                         '-b', cached.path, '-F', cached.format, files.disk)
    LOG.info('Disk rebased from %(o)s on %(n)s', {'o': backing,
                                                  'n': cached.path},
             instance=instance)
    return True
