"""An instance's ephemeral and swap disks (doc/source/disks.rst).

What nova's libvirt driver makes of a flavor's ``ephemeral_gb`` and
``swap`` and of the ephemeral and swap block device mappings Nova passes
in ``block_device_info`` (Nova's API turns the flavor's into mappings):

* ephemeral disks ``disk.eph0``, ``disk.eph1``, ... in the instance
  directory (:class:`nova_clear.storage.InstanceFiles`), one per ephemeral
  mapping, of its size, or else one of the flavor's ``ephemeral_gb``;
  formatted with the mapping's ``guest_format``, else
  ``[DEFAULT] default_ephemeral_format``, else ext4 (every Clear Container
  runs Linux), labelled ``ephemeral<N>``; ``[DEFAULT] virt_mkfs`` commands
  apply as in nova.
* a swap disk ``disk.swap``: the swap mapping's size when it is usable
  (``nova.virt.driver.swap_is_usable``), else the flavor's ``swap`` MiB;
  mkswap.

Raw files, sparse (``[DEFAULT] preallocate_images = space`` allocates
them), made by nova-compute itself: mkfs and mkswap on a regular file
need no root.  The domain attaches what exists after the instance's own
disks (:meth:`InstanceFiles.local_disks`, ``domain.BootConfig``).
Rebuild with ``preserve_ephemeral`` keeps the ephemeral disks
(:func:`rebuild_preserving_ephemeral`); resize grows them
(:func:`wanted` with ``resize``, :func:`ensure` with ``grow``).
"""

import dataclasses
import errno
import os
import shutil
import subprocess

from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_utils import units

from nova.compute import task_states
from nova.compute import utils as compute_utils
import nova.conf
from nova import exception
import nova.privsep.fs
from nova.virt.disk import api as disk_api
from nova.virt import driver

from nova_clear import exception as clear_exc
from nova_clear.i18n import _
from nova_clear import storage

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

SWAP = 'swap'
# The guest_format values of ephemeral mappings: nova's libvirt driver's
# (is_supported_fs_format), and vfat, which nova's mkfs helper formats
# too (it needs dosfstools on the host).
FORMATS = (nova.privsep.fs.FS_FORMAT_EXT2, nova.privsep.fs.FS_FORMAT_EXT3,
           nova.privsep.fs.FS_FORMAT_EXT4, nova.privsep.fs.FS_FORMAT_XFS,
           nova.privsep.fs.FS_FORMAT_VFAT)
EXT = (nova.privsep.fs.FS_FORMAT_EXT2, nova.privsep.fs.FS_FORMAT_EXT3,
       nova.privsep.fs.FS_FORMAT_EXT4)
DEFAULT_FORMAT = nova.privsep.fs.FS_FORMAT_EXT4


@dataclasses.dataclass(frozen=True)
class LocalDisk:
    name: str           # file name in the instance directory
    size: int           # bytes
    fs: str             # filesystem type, or SWAP
    label: str = None   # filesystem label (ephemeral<N>)


def fs_label(index):
    """The label nova's libvirt driver gives the index-th ephemeral
    disk's filesystem."""
    return 'ephemeral%d' % index


def _ephemeral(index, size_gb, guest_format):
    if guest_format and guest_format not in FORMATS:
        raise exception.InvalidBDMFormat(
            details=_('%(f)s format is not supported (ephemeral disks: '
                      '%(s)s)') % {'f': guest_format, 's': ', '.join(FORMATS)})
    fs = guest_format or CONF.default_ephemeral_format or DEFAULT_FORMAT
    return LocalDisk('%s%d' % (storage.EPHEMERAL_PREFIX, index),
                     size_gb * units.Gi, fs, fs_label(index))


def wanted(instance, block_device_info, resize=False):
    """The LocalDisks ``instance`` should have, ephemerals in index order
    then swap.  ``resize`` (finish_migration, ``instance.flavor`` the new
    flavor): a single ephemeral disk takes the flavor's ``ephemeral_gb``
    when that is larger, and the swap is the flavor's, as nova's libvirt
    driver sizes them on resize (it ignores the swap mapping there).
    InvalidBDMFormat for a ``guest_format`` no mkfs here makes."""
    flavor = instance.flavor
    ephemerals = driver.block_device_info_get_ephemerals(block_device_info)
    if ephemerals:
        sizes = [(i, eph.get('size') or 0, eph.get('guest_format'))
                 for i, eph in enumerate(ephemerals)]
        if resize and len(sizes) == 1 and flavor.ephemeral_gb > sizes[0][1]:
            sizes = [(0, flavor.ephemeral_gb, sizes[0][2])]
    elif flavor.ephemeral_gb and flavor.ephemeral_gb > 0:
        sizes = [(0, flavor.ephemeral_gb, None)]
    else:
        sizes = []
    disks = [_ephemeral(i, gb, fmt) for i, gb, fmt in sizes if gb > 0]
    swap = driver.block_device_info_get_swap(block_device_info)
    if driver.swap_is_usable(swap) and not resize:
        swap_mb = swap['swap_size']
    else:
        swap_mb = flavor.swap or 0
    if swap_mb > 0:
        disks.append(LocalDisk(storage.SWAP_NAME, swap_mb * units.Mi, SWAP))
    return disks


def current_ephemeral_gb(instance, block_device_info):
    """The ephemeral storage the instance has now, as a resize compares
    it with the new flavor's: its ephemeral mappings' sizes, else its
    flavor's ``ephemeral_gb``."""
    ephemerals = driver.block_device_info_get_ephemerals(block_device_info)
    if ephemerals:
        return sum(eph.get('size') or 0 for eph in ephemerals)
    return instance.flavor.ephemeral_gb or 0


def _describe(disk):
    if disk.fs == SWAP:
        return _('swap disk %(n)s (%(s)d MiB)') % {
            'n': disk.name, 's': disk.size // units.Mi}
    return _('ephemeral disk %(n)s (%(s)d GiB %(f)s)') % {
        'n': disk.name, 's': disk.size // units.Gi, 'f': disk.fs}


def create(disk, path, os_type=None):
    """Make ``disk`` at ``path``: a sparse raw file (allocated with
    ``preallocate_images = space``), formatted; through ``path.tmp``, so
    that a failure leaves nothing.  LocalDiskFailed naming the cause (a
    full filesystem, mkfs's complaint)."""
    tmp = path + '.tmp'
    try:
        with open(tmp, 'wb') as f:
            if CONF.preallocate_images == 'space':
                os.posix_fallocate(f.fileno(), 0, disk.size)
            f.truncate(disk.size)
        if disk.fs == SWAP:
            nova.privsep.fs.unprivileged_mkfs(SWAP, tmp)
        else:
            # as nova's libvirt driver: unprivileged on a file, the
            # virt_mkfs command of the os_type if one is configured
            disk_api.mkfs(os_type, disk.label, tmp, run_as_root=False,
                          specified_fs=disk.fs)
        os.replace(tmp, path)
    except (OSError, processutils.ProcessExecutionError) as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, processutils.ProcessExecutionError):
            reason = (e.stderr or e.stdout or str(e)).strip()[-300:]
            if 'No space left' in reason:
                reason = _('no space left on the instances filesystem: '
                           '%s') % reason
        elif e.errno in (errno.ENOSPC, errno.EDQUOT):
            reason = _('no space left on the instances filesystem (%s)') % (
                e.strerror or e)
        else:
            reason = str(e)
        raise clear_exc.LocalDiskFailed(disk=_describe(disk), reason=reason)
    LOG.debug('Created %s', _describe(disk))


def grow_ext_image(path, size, what):
    """A raw image file holding an ext2/3/4 filesystem, and the
    filesystem, grown to ``size`` bytes offline, as the file's owner: the
    filesystem checked (``e2fsck -fy``: 0-2 mean clean or repaired), the
    file extended, ``resize2fs``.  Never shrinks.  ResizeError naming
    ``what`` on failure.  Returns the bytes before and after."""
    before = os.path.getsize(path)
    if before >= size:
        return before, before
    check = subprocess.run(['e2fsck', '-fy', path], capture_output=True,
                           text=True)
    if check.returncode & ~3:
        raise exception.ResizeError(
            reason=_('e2fsck of %(w)s %(p)s failed: %(e)s') %
            {'w': what, 'p': path,
             'e': (check.stdout + check.stderr).strip()[-300:]})
    with open(path, 'r+b') as f:
        f.truncate(size)
    try:
        processutils.execute('resize2fs', path)
    except processutils.ProcessExecutionError as e:
        raise exception.ResizeError(
            reason=_('resize2fs of %(w)s %(p)s failed: %(e)s') %
            {'w': what, 'p': path, 'e': (e.stderr or str(e)).strip()[-300:]})
    return before, size


def _grow(disk, path):
    size = os.path.getsize(path)
    if size >= disk.size:
        return
    if disk.fs in EXT:
        grow_ext_image(path, disk.size, _('the ephemeral disk'))
    else:
        # xfs grows only mounted, vfat not at all: the guest's business
        with open(path, 'r+b') as f:
            f.truncate(disk.size)
        LOG.warning('Ephemeral disk %(p)s grown to %(s)d GiB; its %(f)s '
                    'filesystem keeps its size', {
                        'p': path, 's': disk.size // units.Gi, 'f': disk.fs})
    LOG.info('Grew %s from %d GiB', _describe(disk), size // units.Gi)


def ensure(instance, disks, files, grow=False):
    """Create what of ``disks`` (:func:`wanted`) is missing in ``files``;
    with ``grow`` (resize) an existing ephemeral disk smaller than wanted
    grows, with its ext filesystem.  A swap disk of another size is made
    again, one no longer wanted removed (it holds nothing across boots).
    Existing ephemeral disks are never reformatted.  Returns the names
    created."""
    created = []
    os_type = instance.os_type if instance.obj_attr_is_set('os_type') \
        else None
    for disk in disks:
        path = os.path.join(files.dir, disk.name)
        if disk.fs == SWAP and os.path.exists(path) and \
                os.path.getsize(path) != disk.size:
            os.unlink(path)
        if not os.path.exists(path):
            create(disk, path, os_type)
            created.append(disk.name)
        elif grow and disk.fs != SWAP:
            _grow(disk, path)
    if not any(d.fs == SWAP for d in disks) and os.path.exists(files.swap):
        os.unlink(files.swap)
    names = {d.name for d in disks}
    for name in files.ephemeral_names():
        if name not in names:
            LOG.warning('%s is not among the ephemeral disks the instance '
                        'should have; kept (and attached)', name,
                        instance=instance)
    if created:
        LOG.info('Created %s', ', '.join(created), instance=instance)
    return created


def remove_all_but_ephemerals(files):
    """Empty the instance directory but for its ephemeral disks."""
    keep = set(files.ephemeral_names())
    for name in os.listdir(files.dir):
        if name in keep:
            continue
        path = os.path.join(files.dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def rebuild_preserving_ephemeral(drv, context, instance, image_meta,
                                 injected_files, admin_password, allocations,
                                 bdms, detach_block_devices,
                                 attach_block_devices, network_info,
                                 block_device_info):
    """Nova's default rebuild (clean power off, destroy, spawn), keeping
    the ephemeral disks: the new image's root disk, config drive and swap
    are made afresh, the ephemeral disks (and their data) are attached as
    they were.  Nova's default rebuild refuses ``preserve_ephemeral``."""
    timeout = compute_utils.get_value_from_system_metadata(
        instance, key='image_os_shutdown_timeout', type=int,
        default=CONF.shutdown_timeout)
    drv.power_off(instance, timeout, CONF.compute.shutdown_retry_interval)
    detach_block_devices(context, bdms, detach_root_bdm=True)
    drv.destroy(context, instance, network_info, block_device_info,
                destroy_disks=False)
    files = drv._files(instance)
    # (migration imports this module)
    from nova_clear import migration
    migration.remove_on_delete(files, instance)
    remove_all_but_ephemerals(files)
    LOG.info('Rebuild keeps the ephemeral disks %s',
             ', '.join(files.ephemeral_names()) or '(none)',
             instance=instance)
    instance.task_state = task_states.REBUILD_BLOCK_DEVICE_MAPPING
    instance.save(expected_task_state=[task_states.REBUILDING])
    new_block_device_info = attach_block_devices(context, instance, bdms)
    instance.task_state = task_states.REBUILD_SPAWNING
    instance.save(
        expected_task_state=[task_states.REBUILD_BLOCK_DEVICE_MAPPING])
    drv.spawn(context, instance, image_meta, injected_files, admin_password,
              allocations, network_info=network_info,
              block_device_info=new_block_device_info)
