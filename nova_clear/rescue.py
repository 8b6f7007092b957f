"""Rescue and unrescue: boot a rescue image with the instance's own disk
attached, and go back to the instance untouched.

Rescue (as nova's libvirt driver does it): the instance's domain
definition, as libvirt holds it, is saved to ``<instance>/unrescue.xml``
(its presence means "in rescue mode"); the rescue image's disks are made
in ``<instance>/rescue/`` (an :class:`nova_clear.storage.InstanceFiles` of
its own, so the caches keep the rescue image while it is used); the
instance stops and the same domain (name, uuid, flavor, ports) is
redefined to boot the rescue image, with the instance's disk attached
read-write after the rescue image's disks:

========================  ==================  ==========================
rescue image              boots from          the instance's disk
========================  ==================  ==========================
disk image                vda (overlay)       vdb (its overlay, or the
                                              container's writable disk)
container image           vda + vdb (rootfs   vdc
                          + fresh writable)
stable device rescue      the rescue disk,    unchanged (vda, vdb, ...)
(``hw_rescue_*``)         after the others
========================  ==================  ==========================

Unrescue redefines the saved original, removes the rescue files and boots
the instance.  Nothing of the instance's own files is written by rescue
(only the guest, through the attached disk, changes them), so unrescue
returns to the original.

Stable device rescue: microvm has one disk bus (virtio-mmio) and no
firmware boot order, so ``hw_rescue_bus`` must be ``virtio`` and
``hw_rescue_device`` ``disk`` (others: UnsupportedRescueBus/Device); the
instance's disks keep their devices and the agent boots the rescue disk
(``nova_clear.root=``), which must be a disk image.
"""

import dataclasses
import os
import shutil
import time

from oslo_log import log as logging
from oslo_utils import excutils

from nova import exception
from nova.virt import hardware

from nova_clear import domain
from nova_clear.i18n import _
from nova_clear import storage

LOG = logging.getLogger(__name__)

SAVED_XML = 'unrescue.xml'
RESCUE_DIR = 'rescue'
STABLE_BUSES = ('virtio',)
STABLE_DEVICES = ('disk',)


def saved_xml_path(files):
    return os.path.join(files.dir, SAVED_XML)


def rescue_files(files):
    """The rescue image's disks: ``<instance>/rescue/{disk,upper,...}``."""
    return storage.InstanceFiles(files.dir, RESCUE_DIR)


def is_rescued(files):
    return os.path.exists(saved_xml_path(files))


def stable_device(image_meta):
    """True for stable device rescue (the image sets ``hw_rescue_bus`` or
    ``hw_rescue_device``); UnsupportedRescueBus/Device for what microvm
    cannot attach."""
    if not hardware.check_hw_rescue_props(image_meta):
        return False
    props = image_meta.properties
    bus = props.get('hw_rescue_bus') if 'hw_rescue_bus' in props else None
    device = (props.get('hw_rescue_device')
              if 'hw_rescue_device' in props else None)
    if bus is not None and bus not in STABLE_BUSES:
        raise exception.UnsupportedRescueBus(bus=bus, virt='clear')
    if device is not None and device not in STABLE_DEVICES:
        raise exception.UnsupportedRescueDevice(device=device)
    return True


def instance_disk(files):
    """(path, format) of the instance's own disk: its writable disk for a
    container image, its overlay for a disk image."""
    if files.rootfs_ref():
        return (files.upper, 'raw')
    return (files.disk, 'qcow2')


def boot_config(base, files, rfiles, stable):
    """The rescue BootConfig.

    ``base`` is the instance's BootConfig made from ``rfiles`` (the rescue
    image's disks, no config drive) or, for stable device rescue, from
    ``files`` (the instance's own layout).
    """
    if not stable:
        # The console stays the instance's: Nova shows the rescue boot.
        return dataclasses.replace(base, console_log=files.console_log,
                                   extra_disks=(instance_disk(files),))
    if rfiles.rootfs_ref():
        raise exception.UnsupportedRescueImage(
            image=_('a container image (stable device rescue boots a disk '
                    'image)'))
    boot = dataclasses.replace(base, extra_disks=((rfiles.disk, 'qcow2'),))
    dev = domain.disk_devices(boot)[-1][0]
    return dataclasses.replace(boot, root_dev='/dev/' + dev)


def _write(path, text):
    with open(path + '.tmp', 'w') as f:
        f.write(text)
    os.replace(path + '.tmp', path)


def _remove_rescue_files(files):
    shutil.rmtree(rescue_files(files).dir, ignore_errors=True)
    for path in (saved_xml_path(files), saved_xml_path(files) + '.tmp'):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def rescue(drv, context, instance, network_info, image_meta):
    """Boot ``image_meta`` (the rescue image) in place of the instance;
    its disk attached (module doc).  Any failure leaves the instance as it
    was (running again if it ran) and no rescue files."""
    t0 = time.monotonic()
    files = drv._files(instance)
    guest = drv.host.lookup(instance.uuid)
    if is_rescued(files):
        raise exception.InstanceNotRescuable(
            instance_id=instance.uuid, reason=_('already in rescue mode'))
    stable = stable_device(image_meta)
    interfaces = drv._interfaces(instance, network_info)
    was_active = guest.is_active()
    original = guest.get_xml_desc(inactive=True)
    rfiles = rescue_files(files)
    try:
        rfiles.create()
        drv.disks.ensure(context, instance, image_meta, rfiles)
        base = drv._boot_config(instance, files if stable else rfiles,
                                network_info, interfaces)
        boot = boot_config(base, files, rfiles, stable)
        xml = drv._domain_xml(instance, image_meta, boot)
        rfiles.write_domain_xml(xml)
        _write(saved_xml_path(files), original)
    except Exception:
        with excutils.save_and_reraise_exception():
            LOG.error('Preparing the rescue failed; the instance is '
                      'untouched', instance=instance)
            _remove_rescue_files(files)
    t1 = time.monotonic()
    try:
        guest.destroy()
        rescue_guest = drv.host.define(xml)
        drv._relaunch(instance, network_info, rescue_guest)
    except Exception:
        with excutils.save_and_reraise_exception():
            LOG.error('Starting the rescue guest failed; restoring the '
                      'instance', instance=instance)
            _restore(drv, instance, files, original, network_info,
                     was_active)
    LOG.info('Rescue guest started in %.2fs (disks %.2fs)%s',
             time.monotonic() - t0, t1 - t0,
             ' (stable device rescue)' if stable else '',
             instance=instance)


def _restore(drv, instance, files, original, network_info, launch):
    try:
        guest = drv.host.find(instance.uuid)
        if guest is not None:
            guest.destroy()
        guest = drv.host.define(original)
        _remove_rescue_files(files)
        if launch:
            drv._relaunch(instance, network_info, guest)
    except Exception as e:
        LOG.error('Could not restore the instance after a failed rescue: '
                  '%s; unrescue or hard reboot it', e, instance=instance)


def _network_info(instance):
    if instance.obj_attr_is_set('info_cache') and instance.info_cache:
        return instance.info_cache.network_info or []
    return []


def unrescue(drv, context, instance):
    """Redefine the saved original, boot it, remove the rescue files.
    Safe to repeat after a failure (the saved original goes last)."""
    t0 = time.monotonic()
    files = drv._files(instance)
    try:
        with open(saved_xml_path(files)) as f:
            original = f.read()
    except FileNotFoundError:
        raise exception.InstanceNotInRescueMode(instance_id=instance.uuid)
    network_info = _network_info(instance)
    guest = drv.host.find(instance.uuid)
    if guest is not None:
        guest.destroy()
    guest = drv.host.define(original)
    drv._relaunch(instance, network_info, guest)
    _remove_rescue_files(files)
    LOG.info('Unrescued in %.2fs', time.monotonic() - t0, instance=instance)
