"""An instance's disks, from the image caches into its directory.

Disk images become a qcow2 overlay on the cached image; container images a
shared read-only root filesystem (rebuilt when it was lost from the cache)
plus a writable disk with the workload; Nova's config drive when the
instance or policy wants one.  The files themselves are named by
:class:`nova_clear.storage.InstanceFiles`; the caches' periodic pass is
:meth:`InstanceDisks.remove_unused`.
"""

import os

from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_utils import units
from oslo_utils import uuidutils

from nova.api.metadata import base as instance_metadata
from nova import exception
from nova.image import glance
from nova.virt import configdrive

from nova_clear.i18n import _
from nova_clear.images import container
from nova_clear.images import disk as disk_images
from nova_clear.images import workload
from nova_clear import storage

LOG = logging.getLogger(__name__)


class InstanceDisks:
    """Makes instances' disks from the disk image and root filesystem
    caches, and keeps in those caches what instances use."""

    def __init__(self, image_cache, rootfs_cache):
        self.image_cache = image_cache
        self.rootfs_cache = rootfs_cache

    def ensure(self, context, instance, image_meta, files):
        """The instance's disks: an overlay on a cached disk image, or a
        container image's shared root filesystem plus a writable disk.

        Each cache records the instance's reference under its lock
        (``claim``), so manage_image_cache never removes what a spawn in
        progress is about to use.
        """
        if files.has_disks():
            self._ensure_rootfs(context, instance, image_meta, files)
            return
        if not image_meta.obj_attr_is_set('id'):
            raise exception.InstanceDeployFailure(
                reason=_('Clear Containers boot from an image; this '
                         'instance has none (boot from volume is not '
                         'supported)'))
        cached = self.image_cache.get(
            context, image_meta,
            claim=lambda c: files.write_image_ref(c.image_id))
        root_gb = instance.flavor.root_gb
        if not container.is_container(image_meta, cached):
            disk_images.create_overlay(cached, files.disk, root_gb)
            return
        rootfs = self.rootfs_cache.get(
            cached, root_gb * units.Gi if root_gb else None,
            claim=lambda r: files.write_rootfs_ref(r.path))
        props = image_properties(context, image_meta)
        wl = workload.resolve(rootfs.config, props, str(image_meta.id))
        container.create_writable_disk(
            files.upper, root_gb, wl,
            authorized_keys=(instance.key_data
                             if instance.obj_attr_is_set('key_data')
                             else None))

    def _ensure_rootfs(self, context, instance, image_meta, files):
        """Rebuild a container instance's shared root filesystem when it
        was lost from the cache (removed by hand, cache wiped): from the
        instance's image, through the caches, with the same digest."""
        ref = files.rootfs_ref()
        if ref is None or os.path.exists(ref):
            return
        expected = container.digest_of(ref)
        LOG.warning('The root filesystem %(r)s is no longer in the cache; '
                    'rebuilding it from image %(i)s',
                    {'r': ref, 'i': instance.image_ref}, instance=instance)
        if not image_meta.obj_attr_is_set('id'):
            raise exception.InstanceDeployFailure(
                reason=_('the root filesystem %s is lost and the instance '
                         'has no image to rebuild it from') % ref)

        def claim(rootfs):
            if rootfs.digest != expected:
                raise exception.InstanceDeployFailure(
                    reason=_('image %(i)s now unpacks to %(n)s, not %(o)s '
                             'the instance was created with') %
                    {'i': image_meta.id, 'n': rootfs.digest, 'o': expected})
            files.write_rootfs_ref(rootfs.path)
        cached = self.image_cache.get(
            context, image_meta,
            claim=lambda c: files.write_image_ref(c.image_id))
        # No size limit: the instance was created within its flavor.
        self.rootfs_cache.get(cached, None, claim=claim)

    def remove_unused(self, instances_path, image_ids, min_age):
        """Nova's periodic image cache pass: remove the cached images and
        root filesystems older than ``min_age`` seconds that neither
        ``image_ids`` (the images of Nova's instances) nor an instance
        directory in ``instances_path`` refers to."""

        # Called again under each candidate's lock: what the instance
        # directories refer to now, spawns in progress included.
        def local_files():
            names = os.listdir(instances_path) \
                if os.path.isdir(instances_path) else []
            # <uuid>, and <uuid>_resize (nova_clear.migration) until the
            # resize is confirmed; not _clear_base...
            files = [storage.InstanceFiles(instances_path, name)
                     for name in names
                     if uuidutils.is_uuid_like(name.removesuffix('_resize'))]
            # A rescued instance's rescue image (nova_clear.rescue).
            return files + [storage.InstanceFiles(f.dir, 'rescue')
                            for f in files
                            if os.path.isdir(os.path.join(f.dir, 'rescue'))]

        def images_in_use():
            return image_ids | {ref for ref in (f.image_ref()
                                                for f in local_files())
                                if ref}

        def rootfs_in_use():
            return {ref for ref in (f.rootfs_ref() for f in local_files())
                    if ref}
        self.image_cache.remove_unused(images_in_use, min_age)
        self.rootfs_cache.remove_unused(rootfs_in_use, min_age)


def ensure_config_drive(instance, injected_files, admin_password,
                        network_info, files):
    """Nova's own config drive, when the instance or policy wants one:
    cloud-init in disk images finds it by its label, the agent mounts it
    at /.nova-clear/config-drive for container workloads."""
    if not configdrive.required_by(instance) or \
            os.path.exists(files.config_drive):
        return
    extra_md = {'admin_pass': admin_password} if admin_password else {}
    inst_md = instance_metadata.InstanceMetadata(
        instance, content=injected_files, extra_md=extra_md,
        network_info=network_info)
    tmp = files.config_drive + '.tmp'
    with configdrive.ConfigDriveBuilder(instance_md=inst_md) as cdb:
        try:
            cdb.make_drive(tmp)
        except processutils.ProcessExecutionError as e:
            raise exception.InstanceDeployFailure(
                reason=_('cannot build the config drive: %s') % e)
    os.replace(tmp, files.config_drive)
    configdrive.update_instance(instance)


def image_properties(context, image_meta):
    """All of the image's Glance properties that say what a container runs
    (nova's ImageMeta keeps only the ones nova knows; the clear_* ones are
    ours)."""
    image = glance.API().get(context, str(image_meta.id))
    return {k: v for k, v in (image.get('properties') or {}).items()
            if k in workload.PROPS}
