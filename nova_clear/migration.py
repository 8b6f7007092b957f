"""Resize and cold migration (``ClearDriver.migrate_disk_and_power_off``,
``finish_migration``, ``confirm_migration``, ``finish_revert_migration``).

The shape of nova's libvirt driver (doc/source/resize.rst):

* **source, migrate_disk_and_power_off**: a disk shrink is refused before
  anything changes (``InstanceFaultRollback(ResizeError)``: the instance
  keeps running); the guest is powered off, its ports unplugged, its
  directory renamed ``<uuid>_resize`` and the instance's own files copied
  into a fresh ``<uuid>`` (:func:`move_files`: a local copy when the
  destination's IP is this machine's, the same host or another compute
  host here; nova's remotefs helper to the same path at another IP).
  Any failure puts the directory back and boots the original again (it
  ran before), then raises ``InstanceFaultRollback``.  ``disk_info``
  names the source and where the copy is
  (:func:`nova_clear.migration_hosts.disk_info`).
* **destination, finish_migration**: from another host, the copy moves
  into this host's instances path and onto this host's caches (the base
  image or root filesystem from Glance there:
  :mod:`nova_clear.migration_hosts`); the instance's flavor is the new
  one: its disks grow to the new root disk (the qcow2 overlay with
  ``qemu-img resize``, the container's writable disk and its ext4 with
  ``resize2fs``), the domain is (re)defined from fresh XML (vCPUs, RAM)
  and started.  A failure stops the domain (defined, not running) and
  raises ``ResizeError`` naming the cause (Nova: ERROR with that fault,
  the old flavor back; both directories stay, a hard reboot boots
  ``<uuid>`` with the old flavor, a delete removes everything).
* **source, confirm_migration**: ``<uuid>_resize`` is removed (and, when
  the instance moved to another host, the old domain undefined).
* **revert**: Nova destroys the new instance at the destination (its
  ``<uuid>``; :func:`remove_on_delete` keeps ``_resize`` during a revert),
  then **finish_revert_migration** at the source renames ``<uuid>_resize``
  back and boots the original from fresh XML with the old flavor.

What is copied: the disks (``disk`` overlay, or ``upper`` writable disk),
the ephemeral disks (``disk.eph<N>``), ``disk.config``, and the
``rootfs``/``image`` references (the shared base image and root filesystem
come from the destination's caches, fetched or rebuilt there when
missing).  Not the swap disk: as nova's libvirt driver, finish_migration
makes it afresh with the new flavor's size (:mod:`nova_clear.local_disks`);
a single ephemeral disk grows to the new flavor's ``ephemeral_gb`` (and
its ext filesystem with it), less ephemeral storage than the instance has
is refused like a root disk shrink.  A revert gets the original ephemeral
and swap disks back with ``<uuid>_resize``.  Not the console log
(virtlogd's, root-owned): the resized instance starts a new one, a
reverted one gets its own back.
"""

import ipaddress
import os
import shutil
import socket
import time

from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_utils import fileutils
from oslo_utils import units

from nova.compute import task_states
import nova.conf
from nova import exception
from nova import objects
from nova.virt.disk import api as disk_api
from nova.virt.image import model as imgmodel
from nova.virt.libvirt import utils as libvirt_utils
from nova.virt.libvirt.volume import remotefs

from nova_clear import domain
from nova_clear.i18n import _
from nova_clear import local_disks
from nova_clear import migration_hosts
from nova_clear import storage

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

RESIZE_SUFFIX = '_resize'
# The instance's own files, as migrate_disk_and_power_off moves them.
MOVED = ('disk', 'upper', 'disk.config', 'rootfs', 'image')
DISKS = ('disk', 'upper', 'disk.config')


def resize_dir(files):
    return files.dir + RESIZE_SUFFIX


def _refuse(reason):
    return exception.InstanceFaultRollback(
        exception.ResizeError(reason=reason))


def _root_bytes(root_gb):
    return max(root_gb, 1) * units.Gi


def is_local(drv, dest):
    """True when ``dest`` (the migration's destination host: its IP, or
    its name) is on this machine: this host, or another compute host here
    (an address of this machine's, loopback included)."""
    if dest in (None, '', CONF.host, drv.get_host_ip_addr()):
        return True
    try:
        addr = ipaddress.ip_address(dest)
    except ValueError:
        return False
    if addr.is_loopback:
        return True
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((str(addr), 0))   # only an address of this machine
        return True
    except OSError:
        return False


# -- moving files ------------------------------------------------------------
def move_files(src_dir, dest_dir, names, dest_host=None):
    """Copy ``names`` of ``src_dir`` into ``dest_dir`` (which exists) on
    ``dest_host``: ``cp --sparse`` here (None), nova's remote filesystem
    helper (``[libvirt] remote_filesystem_transport``: ssh or rsync)
    otherwise.  Returns what was copied."""
    copied = []
    for name in names:
        src = os.path.join(src_dir, name)
        if not os.path.exists(src):
            continue
        dst = os.path.join(dest_dir, name)
        if dest_host is None:
            processutils.execute('cp', '--sparse=always', src, dst)
        else:
            # as nova's libvirt driver: no compression for qcow2
            libvirt_utils.copy_image(src, dst, host=dest_host,
                                     compression=name != 'disk')
        copied.append(name)
    return copied


def moved(files):
    """The names of the instance's files migrate_disk_and_power_off moves
    (those that exist are copied): MOVED and the ephemeral disks."""
    return MOVED + tuple(files.ephemeral_names())


def _check_space(files):
    """Refuse before the guest stops when this host's instances path
    cannot hold a second copy of the instance's files (same-host move)."""
    needed = 0
    for name in moved(files):
        try:
            needed += os.stat(os.path.join(files.dir, name)).st_blocks * 512
        except FileNotFoundError:
            pass
    st = os.statvfs(os.path.dirname(files.dir))
    free = st.f_bavail * st.f_frsize
    if needed > free:
        raise _refuse(_('%(n)d MiB free in %(p)s, the copy needs %(c)d MiB')
                      % {'n': free // units.Mi, 'p': os.path.dirname(
                          files.dir), 'c': needed // units.Mi})


def _remove_dest_dir(path, dest_host):
    if dest_host is None:
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            remotefs.RemoteFilesystem().remove_dir(dest_host, path)
        except Exception as e:
            LOG.warning('Could not remove %s on %s: %s', path, dest_host, e)


# -- growing disks -----------------------------------------------------------
def grow_overlay(path, root_gb):
    """The qcow2 overlay to ``root_gb`` (nova's disk API: qemu-img resize,
    never smaller).  The guest's partition and filesystem stay as they
    are: the guest grows them (cloud-init's growpart/resize2fs)."""
    disk_api.extend(imgmodel.LocalFileImage(path, imgmodel.FORMAT_QCOW2),
                    root_gb * units.Gi)


def grow_writable_disk(path, root_gb):
    """The container's writable disk (a raw ext4 image file the nova user
    owns) and its filesystem to ``root_gb``: the file extended, the
    filesystem checked and grown offline
    (:func:`nova_clear.local_disks.grow_ext_image`).  Nothing needs root.
    Returns the bytes before and after."""
    return local_disks.grow_ext_image(path, _root_bytes(root_gb),
                                      _('the writable disk'))


def grow_disks(files, root_gb):
    if os.path.exists(files.upper) and files.rootfs_ref():
        grow_writable_disk(files.upper, root_gb)
    elif os.path.exists(files.disk) and root_gb:
        grow_overlay(files.disk, root_gb)


# -- the four driver calls --------------------------------------------------
def migrate_disk_and_power_off(drv, context, instance, dest, flavor,
                               network_info, timeout=0, retry_interval=0,
                               block_device_info=None):
    t0 = time.monotonic()
    if flavor.root_gb < instance.flavor.root_gb:
        raise _refuse(_('Unable to resize disk down (root disk %(o)d GB -> '
                        '%(n)d GB).') % {'o': instance.flavor.root_gb,
                                         'n': flavor.root_gb})
    eph_gb = local_disks.current_ephemeral_gb(instance, block_device_info)
    if (flavor.ephemeral_gb or 0) < eph_gb:
        # as nova's libvirt driver (InstanceFaultRollback(ResizeError))
        raise _refuse(_('Unable to resize disk down (ephemeral disks '
                        '%(o)d GB -> %(n)d GB).') % {
                            'o': eph_gb, 'n': flavor.ephemeral_gb or 0})
    try:
        domain.disk_iotune(flavor)   # what finish_migration will apply
    except exception.NovaException as e:
        raise _refuse(str(e))
    # This machine's IP: this host, or another compute host on this
    # machine (the destination moves the copy into its own instances
    # path: nova_clear.migration_hosts.adopt).
    dest_host = None if is_local(drv, dest) else dest
    files = drv._files(instance)
    guest = drv.host.lookup(instance.uuid)
    if not files.has_disks():
        raise _refuse(_('the instance has no disks in %s') % files.dir)
    saved = resize_dir(files)
    if dest_host is None:
        _check_space(files)
    else:
        try:
            remotefs.RemoteFilesystem().create_dir(dest_host, files.dir)
        except Exception as e:
            raise _refuse(_('cannot create %(d)s on %(h)s: %(e)s') %
                          {'d': files.dir, 'h': dest_host, 'e': e})
    was_active = guest.is_active()
    drv._power_off(instance, timeout, retry_interval)
    drv.unplug_vifs(instance, network_info)
    copied = []
    try:
        # A leftover of an earlier failed resize (its instance ran from
        # <uuid> since): the current files win.
        shutil.rmtree(saved, ignore_errors=True)
        names = moved(files)
        os.rename(files.dir, saved)
        if dest_host is None:
            fileutils.ensure_tree(files.dir)
        copied = move_files(saved, files.dir, names, dest_host)
    except Exception as e:
        LOG.error('Moving the disks for the resize failed: %s; restoring '
                  'the instance', e, instance=instance)
        _restore_source(drv, instance, files, dest_host, network_info,
                        was_active)
        if isinstance(e, exception.InstanceFaultRollback):
            raise
        raise _refuse(_('moving the disks failed: %s') % e) from e
    LOG.info('Disks moved for the resize in %.2fs (%s)',
             time.monotonic() - t0, ', '.join(copied), instance=instance)
    return migration_hosts.disk_info(
        drv, files, [{'path': os.path.join(files.dir, n),
                      'type': 'qcow2' if n == 'disk' else 'raw'}
                     for n in copied if n in DISKS or
                     storage.ephemeral_index(n) is not None])


def _restore_source(drv, instance, files, dest_host, network_info,
                    launch):
    """Undo migrate_disk_and_power_off: the directory back, the original
    running again if it ran."""
    try:
        saved = resize_dir(files)
        if os.path.isdir(saved):
            if dest_host is not None:
                _remove_dest_dir(files.dir, dest_host)
            shutil.rmtree(files.dir, ignore_errors=True)
            os.rename(saved, files.dir)
        elif dest_host is not None:
            _remove_dest_dir(files.dir, dest_host)
        if launch:
            drv._relaunch(instance, network_info,
                          drv.host.lookup(instance.uuid))
        else:
            drv.plug_vifs(instance, network_info)
    except Exception as e:
        LOG.error('Could not restore the instance after a failed resize: '
                  '%s; hard reboot it', e, instance=instance)


def _ensure_bases(drv, context, instance, image_meta, files):
    """The shared base image (disk image) or root filesystem (container)
    the instance's files refer to, in this host's caches."""
    image_id = files.image_ref()
    if files.rootfs_ref() is None and image_id and \
            drv.image_cache.lookup(image_id) is None:
        drv.image_cache.get(context, image_meta,
                            claim=lambda c: files.write_image_ref(c.image_id))
    drv.disks.ensure(context, instance, image_meta, files)


def _stop(instance, guest):
    """Stop, keep defined: the instance's domain on this host (Nova
    lists it, a hard reboot regenerates it, a delete removes it)."""
    if guest is None:
        return
    try:
        guest.destroy()
    except Exception as e:
        LOG.warning('Could not stop the domain: %s', e, instance=instance)


def finish_migration(drv, context, migration, instance, disk_info,
                     network_info, image_meta, resize_instance, power_on,
                     block_device_info=None):
    t0 = time.monotonic()
    files = drv._files(instance)
    try:
        from_other_host = migration_hosts.adopt(instance, files, disk_info)
    except OSError as e:
        raise exception.ResizeError(reason=_(
            'cannot move the files into %(d)s: %(e)s') % {'d': files.dir,
                                                          'e': e}) from e
    if not files.has_disks():
        raise exception.ResizeError(
            reason=_('the moved disks are missing from %s') % files.dir)
    interfaces = drv._interfaces(instance, network_info)
    guest = None
    try:
        if from_other_host:
            migration_hosts.localize_bases(drv, context, instance,
                                           image_meta, files)
        _ensure_bases(drv, context, instance, image_meta, files)
        if resize_instance:
            grow_disks(files, instance.flavor.root_gb)
        # the swap afresh, the ephemeral disks grown to the new flavor
        local_disks.ensure(
            instance, local_disks.wanted(instance, block_device_info,
                                         resize=resize_instance),
            files, grow=resize_instance)
        t1 = time.monotonic()
        old = drv.host.find(instance.uuid)
        if old is not None:
            old.destroy()
        guest = drv._define(instance, image_meta, files, network_info,
                            interfaces)
        if power_on:
            drv._relaunch(instance, network_info, guest)
        else:
            drv.plug_vifs(instance, network_info)
    except Exception as e:
        LOG.error('Finishing the resize failed: %s; the instance stays '
                  'stopped (a hard reboot boots it with its flavor)', e,
                  instance=instance)
        _stop(instance, guest or drv.host.find(instance.uuid))
        if isinstance(e, exception.ResizeError):
            raise
        raise exception.ResizeError(
            reason=_('finishing on %(h)s: %(e)s') % {'h': CONF.host,
                                                     'e': e}) from e
    LOG.info('Resize finished in %.2fs (disks %.2fs): %d vCPU, %d MiB, '
             '%d GB', time.monotonic() - t0, t1 - t0, instance.flavor.vcpus,
             instance.flavor.memory_mb, instance.flavor.root_gb,
             instance=instance)


def confirm_migration(drv, context, migration, instance, network_info):
    files = drv._files(instance)
    if instance.obj_attr_is_set('host') and instance.host and \
            instance.host != CONF.host:
        # It moved away: this host's domain and ports are the old ones.
        drv._remove_domain(instance)
        drv.unplug_vifs(instance, network_info)
    shutil.rmtree(resize_dir(files), ignore_errors=True)
    LOG.info('Resize confirmed', instance=instance)


def finish_revert_migration(drv, context, instance, network_info,
                            power_on):
    t0 = time.monotonic()
    files = drv._files(instance)
    saved = resize_dir(files)
    if os.path.isdir(saved):
        # Whatever the failed or reverted resize left in <uuid> goes.
        shutil.rmtree(files.dir, ignore_errors=True)
        os.rename(saved, files.dir)
    guest = drv.host.find(instance.uuid)
    if guest is not None:
        guest.destroy()
    image_meta = objects.ImageMeta.from_instance(instance)
    drv.disks.ensure(context, instance, image_meta, files)
    guest = drv._define(instance, image_meta, files, network_info)
    if power_on:
        drv._relaunch(instance, network_info, guest)
    else:
        drv.plug_vifs(instance, network_info)
    LOG.info('Resize reverted in %.2fs', time.monotonic() - t0,
             instance=instance)


def remove_on_delete(files, instance):
    """``destroy``/``cleanup`` with the disks: ``<uuid>_resize`` goes too,
    except while Nova reverts a resize (it destroys the new instance, then
    finish_revert_migration restores ``_resize``)."""
    reverting = (instance.obj_attr_is_set('task_state') and
                 instance.task_state == task_states.RESIZE_REVERTING)
    if not reverting:
        shutil.rmtree(resize_dir(files), ignore_errors=True)
