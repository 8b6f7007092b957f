"""ClearDriver on this host without the rest of OpenStack.

Real libvirtd, real QEMU, real guest assets and nova.objects; local image
files stand in for Glance, answered through nova's own Glance API code
path, and nova's FakeVirtAPI for the compute manager.  Used by the boot
benchmarks (``tools/bench_boot.py``, ``tools/boot_demo.py``) and the
functional tests.
"""

import os
import shutil
import sys
from unittest import mock
import uuid

import nova.conf
from nova import exception
from nova.image import glance as nova_glance
from nova.network import model as network_model
from nova import objects
from nova import utils as nova_utils
from nova.virt import fake as fake_virt

from nova_clear import driver as clear_driver

CONF = nova.conf.CONF
objects.register_all()


class LocalGlance:
    """Glance's image service, answering from local files.

    ``install()`` puts it where nova's Glance API looks for its service, so
    the driver downloads through ``nova.image.glance.API`` exactly as in
    production.
    """

    def __init__(self, store=None):
        self.images = {}
        # where uploaded image data goes (snapshots); a directory
        self.store = store

    def add(self, path, disk_format, size=None, properties=None,
            container_format='bare'):
        image_id = str(uuid.uuid4())
        self.images[image_id] = {
            'id': image_id, 'name': os.path.basename(path),
            'status': 'active', 'disk_format': disk_format,
            'container_format': container_format,
            'size': os.path.getsize(path) if size is None else size,
            'properties': dict(properties or {}), 'path': path,
        }
        return image_id

    def show(self, context, image_id, include_locations=False,
             show_deleted=True):
        try:
            meta = dict(self.images[str(image_id)])
        except KeyError:
            raise exception.ImageNotFound(image_id=image_id)
        meta.pop('path', None)
        return meta

    def create(self, context, image_meta, data=None):
        """A new image record, as the compute API makes one for a snapshot
        (``queued``, no data yet)."""
        image_id = str(uuid.uuid4())
        meta = {k: v for k, v in image_meta.items() if k != 'id'}
        meta['properties'] = dict(meta.get('properties') or {})
        meta.update(id=image_id, status='queued', size=0, path=None)
        self.images[image_id] = meta
        if data is not None:
            return self.update(context, image_id, {}, data)
        return self.show(context, image_id)

    def update(self, context, image_id, image_meta, data=None,
               purge_props=True):
        """Nova's ``glance.API().update``: metadata (properties merged
        unless ``purge_props``), and the image data from the file object
        ``data``, stored under ``store``."""
        try:
            image = self.images[str(image_id)]
        except KeyError:
            raise exception.ImageNotFound(image_id=image_id)
        for key, value in image_meta.items():
            if key == 'properties':
                if purge_props:
                    image['properties'] = {}
                image['properties'].update(value)
            elif key not in ('id', 'location'):
                image[key] = value
        if data is not None:
            if self.store is None:
                raise RuntimeError('LocalGlance() was given no store for '
                                   'image data')
            os.makedirs(self.store, exist_ok=True)
            path = os.path.join(self.store, str(image_id))
            with open(path, 'wb') as out:
                shutil.copyfileobj(data, out, 1 << 20)
            image.update(path=path, size=os.path.getsize(path),
                         status='active')
        return self.show(context, image_id)

    def delete(self, context, image_id):
        image = self.images.pop(str(image_id), None)
        if image is None:
            raise exception.ImageNotFound(image_id=image_id)
        if image.get('path') and self.store and \
                os.path.dirname(image['path']) == self.store:
            os.unlink(image['path'])
        return True

    def download(self, context, image_id, data=None, dst_path=None,
                 trusted_certs=None):
        src = self.images[str(image_id)]['path']
        with open(src, 'rb') as f:
            if data is not None:
                shutil.copyfileobj(f, data)
            else:
                with open(dst_path, 'wb') as out:
                    shutil.copyfileobj(f, out)

    def get(self, context, image_id, **kwargs):
        return self.show(context, image_id)

    def image_meta(self, image_id):
        return objects.ImageMeta.from_dict(self.show(None, image_id))

    def install(self):
        """Make nova's Glance API use this service for image ids (not
        URLs); returns the undo."""
        patch = mock.patch.object(nova_glance, 'get_default_image_service',
                                  lambda: self)
        patch.start()
        return patch.stop


def flavor(memory_mb=128, vcpus=1, root_gb=1):
    return objects.Flavor(id=1, flavorid='clear.tiny', name='clear.tiny',
                          memory_mb=memory_mb, vcpus=vcpus, root_gb=root_gb,
                          ephemeral_gb=0, swap=0, extra_specs={})


def instance(context, image, inst_id, name, memory_mb=128, vcpus=1,
             root_gb=1):
    """An Instance as the compute manager hands it to spawn(): the fields
    it carries from the database, no network.  ``image`` is Glance's
    metadata (a dict); ``inst_id`` names the domain (instance-%08x), so it
    must be unique on the host's libvirtd."""
    return objects.Instance(
        context=context, id=inst_id, uuid=str(uuid.uuid4()),
        hostname=name, display_name=name,
        project_id=context.project_id, user_id=context.user_id,
        image_ref=image['id'], flavor=flavor(memory_mb, vcpus, root_gb),
        vcpus=vcpus, memory_mb=memory_mb, root_gb=root_gb, config_drive='',
        launched_at=None,
        system_metadata=nova_utils.get_system_metadata_from_image(image),
        root_device_name='/dev/vda', default_ephemeral_device=None,
        default_swap_device=None, device_metadata=None,
        numa_topology=None, availability_zone=None, user_data=None,
        metadata={}, launch_index=0, reservation_id='r-%d' % inst_id,
        key_name=None, key_data=None,
        keypairs=objects.KeyPairList(objects=[]),
        ec2_ids=objects.EC2Ids(instance_id='i-%08x' % inst_id,
                               ami_id='ami-00000001', kernel_id=None,
                               ramdisk_id=None),
        info_cache=objects.InstanceInfoCache(
            network_info=network_model.NetworkInfo([])))


def privsep_conf(directory, image_cache):
    """Write ``directory``/privsep.conf for the privsep daemons: it names
    the image cache, the only place nova-clear's daemon works in."""
    path = os.path.join(directory, 'privsep.conf')
    with open(path, 'w') as f:
        f.write('[clear]\nimage_cache_path = %s\n' % image_cache)
    return path


def privsep_helper(conf_path):
    """helper_command starting the privsep daemons from this Python's
    environment as the current user (root, not through sudo)."""
    return '%s --config-file %s' % (
        os.path.join(os.path.dirname(sys.executable), 'privsep-helper'),
        conf_path)


def configure(work, assets_path, virt_type='auto', guest_kernel=None):
    """Point nova's CONF (already parsed) at ``work`` for everything the
    driver writes (the image cache: ``work``/cache), with the privsep
    daemons of privsep_helper() reading ``work``/privsep.conf."""
    CONF.set_override('assets_path', assets_path, group='clear')
    CONF.set_override('virt_type', virt_type, group='clear')
    if guest_kernel:
        CONF.set_override('guest_kernel', guest_kernel, group='clear')
    CONF.set_override('instances_path', os.path.join(work, 'instances'),
                      group='clear')
    cache = os.path.join(work, 'cache')
    CONF.set_override('image_cache_path', cache, group='clear')
    CONF.set_override('state_path', work)
    CONF.set_override('lock_path', os.path.join(work, 'locks'),
                      group='oslo_concurrency')
    helper = privsep_helper(privsep_conf(work, cache))
    CONF.set_override('helper_command', helper, group='nova_sys_admin')
    CONF.set_override('helper_command', helper, group='clear_sys_admin')


def driver(init=True, listener=None):
    """A ClearDriver with nova's FakeVirtAPI; init_host() done unless
    ``init`` is false."""
    drv = clear_driver.ClearDriver(fake_virt.FakeVirtAPI())
    if listener is not None:
        drv.register_event_listener(listener)
    if init:
        drv.init_host(CONF.host)
    return drv
