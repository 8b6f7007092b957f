"""Snapshots of Clear Containers (``ClearDriver.snapshot``).

A disk-image instance becomes a disk image: its qcow2 overlay flattened
onto the cached base with ``qemu-img convert`` (qcow2, or nova's
``[libvirt]snapshot_image_format``, ``[libvirt]snapshot_compression``).
A container-image instance becomes a container image, as ``docker commit``
makes one: the image's layers plus one layer holding the overlay's upper
directory, written as a docker-archive (:mod:`nova_clear.images.commit`),
uploaded with ``container_format=docker``, ``disk_format=raw``.

Consistency, live: a running guest is **paused** (libvirt suspend: the vCPUs
stop and QEMU drains and flushes its block layer, so the file on the host
is what the guest has written so far, qcow2 metadata included) while the
instance's *writable* file is copied (``cp --sparse``: the qcow2 overlay,
or the writable ext4 disk), then resumed.  Everything slow (flattening
onto the base, reading the filesystem, building the archive, the upload)
works on that private copy with the guest running again, so the pause
lasts only as long as copying the instance's own changes.  ``qemu-img
-U`` (force-share) on the live overlay without a pause would read a file
QEMU keeps writing (a torn image); a pause for the whole flatten would stop
the guest for the time of copying the base too.  Without a guest agent
there is no filesystem freeze: the snapshot is crash-consistent (what a
power cut would leave, the copy's ext4 journal replayed by ``e2fsck``);
stop the instance first for everything its page cache still holds.

Failures: the guest is resumed, the temporary directory (under the
instance's directory) removed, and the error raised to the compute manager,
which deletes the snapshot image from Glance (``delete_image_on_error``).
"""

import os
import shutil
import subprocess
import tempfile
import time

from oslo_concurrency import processutils
from oslo_log import log as logging

from nova.compute import power_state
from nova.compute import task_states
import nova.conf
from nova import exception
from nova.image import glance
from nova import objects

from nova_clear.i18n import _
from nova_clear.images import commit

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF
DISK_FORMATS = ('qcow2', 'raw', 'vmdk', 'vdi')   # nova's choices


class SnapshotFailed(exception.NovaException):
    msg_fmt = _('Cannot snapshot Clear Container %(name)s: %(reason)s')


def image_metadata(instance, name, disk_format, container_format):
    """What the driver sets on the snapshot image, as nova's libvirt driver
    does: the formats, and properties saying it is a snapshot.  The
    instance's image properties were copied to the image when the compute
    API created it; updated with ``purge_props=False`` they stay."""
    props = {'image_location': 'snapshot', 'image_state': 'available',
             'owner_id': instance.project_id}
    for key in ('kernel_id', 'ramdisk_id', 'os_type'):
        value = getattr(instance, key, None) \
            if instance.obj_attr_is_set(key) else None
        if value:
            props[key] = value
    return {'status': 'active', 'name': name, 'disk_format': disk_format,
            'container_format': container_format, 'properties': props}


def disk_format(snapshot_image):
    """The format of a disk snapshot: ``[libvirt]snapshot_image_format``,
    else the one the image record asks (a backup keeps its image's), else
    qcow2 (the overlay's own)."""
    fmt = CONF.libvirt.snapshot_image_format or \
        snapshot_image.get('disk_format')
    return fmt if fmt in DISK_FORMATS else 'qcow2'


def copy_paused(guest, src, dest):
    """Copy ``src`` while the guest is paused; returns the pause seconds
    (0 when it was not running).  Resumed whatever happens."""
    running = guest.get_power_state() == power_state.RUNNING
    t0 = time.monotonic()
    if running:
        guest.pause()
    try:
        subprocess.run(['cp', '--sparse=always', '--reflink=auto', src, dest],
                       check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        raise SnapshotFailed(name=guest.name,
                             reason=_('copying %(s)s: %(e)s') %
                             {'s': src, 'e': e.stderr.strip()})
    finally:
        if running:
            guest.resume()
    return time.monotonic() - t0 if running else 0.0


def flatten(copy, dest, fmt):
    """The overlay copy and its base as one standalone image."""
    args = ['qemu-img', 'convert', '-f', 'qcow2', '-O', fmt]
    if fmt == 'qcow2' and CONF.libvirt.snapshot_compression:
        args.append('-c')
    processutils.execute(*(args + [copy, dest]))


def replay_journal(copy):
    """Make the copied ext4 what a mount would see: the journal replayed
    and the filesystem checked (``e2fsck -fy``: 0, 1 and 2 mean clean or
    repaired)."""
    result = subprocess.run(['e2fsck', '-fy', copy], capture_output=True,
                            text=True)
    if result.returncode & ~3:
        raise commit.CommitFailed('e2fsck %s: %s' % (
            copy, (result.stdout + result.stderr).strip()[-500:]))


class Snapshotter:
    """Takes the snapshot of one instance for :class:`ClearDriver`."""

    def __init__(self, driver, image_api=None):
        self.driver = driver
        self.image_api = image_api or glance.API()

    def snapshot(self, context, instance, image_id, update_task_state,
                 lock):
        t0 = time.monotonic()
        guest = self.driver.host.find(instance.uuid)
        if guest is None:
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        files = self.driver._files(instance)
        snapshot_image = self.image_api.get(context, image_id)
        container = files.rootfs_ref() is not None
        if container:
            fmt, cfmt = 'raw', 'docker'
        else:
            fmt = disk_format(snapshot_image)
            cfmt = instance.image_meta.container_format \
                if instance.image_meta.obj_attr_is_set('container_format') \
                else 'bare'
        metadata = image_metadata(instance, snapshot_image['name'], fmt,
                                  cfmt)
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        work = tempfile.mkdtemp(prefix='snapshot-', dir=files.dir)
        try:
            out = os.path.join(work, 'image')
            copy = os.path.join(work, 'disk')
            with lock:
                paused = copy_paused(guest,
                                     files.upper if container else files.disk,
                                     copy)
            if container:
                detail = self._commit(context, instance, files, copy, work,
                                      out)
            else:
                flatten(copy, out, fmt)
                detail = fmt
            os.unlink(copy)
            LOG.info('Snapshot %(i)s extracted (%(d)s, paused %(p).2fs), '
                     'uploading %(s)d bytes', {
                         'i': image_id, 'd': detail, 'p': paused,
                         's': os.path.getsize(out)}, instance=instance)
            update_task_state(task_state=task_states.IMAGE_UPLOADING,
                              expected_state=task_states.IMAGE_PENDING_UPLOAD)
            with open(out, 'rb') as data:
                self.image_api.update(context, image_id, metadata, data=data,
                                      purge_props=False)
        except exception.ImageNotFound:
            LOG.warning('Snapshot image %s was deleted during the snapshot',
                        image_id, instance=instance)
            raise
        except commit.CommitFailed as e:
            raise SnapshotFailed(name=instance.name, reason=e)
        except processutils.ProcessExecutionError as e:
            raise SnapshotFailed(name=instance.name,
                                 reason=(e.stderr or str(e)).strip())
        finally:
            shutil.rmtree(work, ignore_errors=True)
        LOG.info('Snapshot %(i)s uploaded in %(t).2fs', {
            'i': image_id, 't': time.monotonic() - t0}, instance=instance)

    def _commit(self, context, instance, files, copy, work, out):
        """The container image of the copied writable disk."""
        replay_journal(copy)
        image_ref = files.image_ref() or instance.image_ref
        cache = self.driver.image_cache
        cached = cache.lookup(image_ref)
        if cached is None:      # lost from the cache: fetch it again
            cached = cache.get(context,
                               objects.ImageMeta.from_instance(instance))
        result = commit.commit(
            cached.path, image_ref, copy, work, out,
            'snapshot of instance %s' % instance.uuid)
        return ('container image %(c)s: %(m)d members in the new layer '
                'sha256:%(d)s' % {'c': result['config_digest'],
                                  'm': result['members'],
                                  'd': result['diff_id']})
