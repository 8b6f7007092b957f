"""Bad input gets a clear error and leaves nothing behind (real libvirt)."""

import os
import shutil

from nova import exception

from nova_clear import exception as clear_exc
from tests.functional import base
from tests.functional import images
from tests.functional import mounts


class TestBadInput(base.FunctionalTestCase):

    def _instances_path(self):
        return self.conf.conf['clear'].instances_path

    def assert_nothing_left(self, drv, instance):
        self.assert_gone(drv, instance)
        self.assertEqual([], drv.image_cache.cached_ids())
        leftovers = [f for f in os.listdir(drv.image_cache.path)
                     if f != 'locks']
        self.assertEqual([], leftovers)

    def _spawn_fails(self, drv, image_id, exc_class, **kw):
        inst = self.make_instance(image_id, **kw)
        err = self.assertRaises(
            exc_class, drv.spawn, self.context, inst,
            self.glance.image_meta(image_id), [], None, {})
        return inst, err

    def _file(self, name, data):
        path = os.path.join(self.tmp, name)
        with open(path, 'wb') as f:
            f.write(data)
        return path

    def test_garbage_claimed_as_qcow2(self):
        drv = self.make_driver()
        image = self.glance.add(self._file('garbage', os.urandom(1 << 20)),
                                'qcow2')
        inst, err = self._spawn_fails(drv, image, exception.ImageUnacceptable)
        self.assertIn('Glance says disk_format qcow2 but the content is raw',
                      str(err))
        self.assert_nothing_left(drv, inst)

    def test_truncated_qcow2(self):
        drv = self.make_driver()
        with open(images.disk_image('qcow2'), 'rb') as f:
            data = f.read()
        # Glance recorded the truncated size: only the content tells.
        path = self._file('truncated.qcow2', data[:len(data) // 2])
        image = self.glance.add(path, 'qcow2')
        inst, err = self._spawn_fails(drv, image, exception.ImageUnacceptable)
        self.assertIn('corrupt or truncated', str(err))
        self.assert_nothing_left(drv, inst)

    def test_truncated_download(self):
        drv = self.make_driver()
        src = images.disk_image('fs')
        path = self._file('short.raw', open(src, 'rb').read(1 << 20))
        image = self.glance.add(path, 'raw', size=os.path.getsize(src))
        inst, err = self._spawn_fails(drv, image, exception.ImageUnacceptable)
        self.assertIn('truncated', str(err))
        self.assert_nothing_left(drv, inst)

    def test_unsupported_disk_format(self):
        drv = self.make_driver()
        image = self.glance.add(images.disk_image('fs'), 'vmdk')
        inst, err = self._spawn_fails(drv, image, exception.ImageUnacceptable)
        self.assertIn('vmdk is not supported', str(err))
        self.assert_nothing_left(drv, inst)

    def test_image_larger_than_flavor_disk(self):
        drv = self.make_driver()
        big = os.path.join(self.tmp, 'big.qcow2')
        shutil.copy(images.disk_image('qcow2'), big)
        os.system('qemu-img resize -q %s 3G' % big)
        image = self.glance.add(big, 'qcow2')
        inst, err = self._spawn_fails(
            drv, image, exception.FlavorDiskSmallerThanImage, root_gb=1)
        self.assertIn('Flavor\'s disk is too small', str(err))
        self.assert_gone(drv, inst)

    def _private_assets(self):
        # copyfile, not copytree: libvirt's ownership xattrs on the shared
        # assets must not come along.
        assets = os.path.join(self.tmp, 'assets')
        shutil.copytree(self.assets_path, assets,
                        copy_function=shutil.copyfile)
        self.conf.config(group='clear', assets_path=assets)
        return assets

    def test_missing_kernel_at_spawn(self):
        assets = self._private_assets()
        drv = self.make_driver()
        # whichever kernel the driver picked (minimal when built)
        os.unlink(drv.assets.load().kernel)
        image = self.glance.add(images.disk_image('fs'), 'raw')
        inst, err = self._spawn_fails(drv, image,
                                      clear_exc.GuestAssetsInvalid)
        self.assertIn('kernel', str(err))
        self.assertIn('nova-clear-build-guest --dest %s' % assets, str(err))
        self.assert_nothing_left(drv, inst)

    def test_corrupt_initrd_refused_at_init_host(self):
        self._private_assets()
        drv = self.make_driver(init=False)
        with open(os.path.join(drv.assets.path, 'initrd.img'), 'r+b') as f:
            f.seek(100)
            f.write(b'\0corrupt')
        err = self.assertRaises(clear_exc.GuestAssetsInvalid,
                                drv.init_host, 'host')
        self.assertIn('corrupt', str(err))

    def test_libvirt_not_running(self):
        self.conf.config(group='clear', connection_uri=(
            'qemu:///system?socket=%s/no-libvirt-sock' % self.tmp))
        drv = self.make_driver(init=False)
        err = self.assertRaises(exception.HypervisorUnavailable,
                                drv.init_host, 'host')
        self.assertIn('Cannot reach libvirt', str(err))
        image = self.glance.add(images.disk_image('fs'), 'raw')
        inst, err = self._spawn_fails(drv, image,
                                      exception.HypervisorUnavailable)
        self.assertFalse(os.path.exists(
            os.path.join(self._instances_path(), inst.uuid)))

    def test_boot_failure_reported_by_guest(self):
        """An image without the workload: the agent says so and stops."""
        drv = self.make_driver()
        image = self.glance.add(
            images.disk_image('fs'), 'raw',
            properties={'os_command_line': 'init=/no/such/app'})
        inst = self.spawn(drv, image)
        text = self.wait_console(drv, inst, 'nova-clear: error:')
        self.assertIn('holds /no/such/app', text)
        drv.destroy(self.context, inst, None)
        self.assert_gone(drv, inst)


class TestFullDisk(base.FunctionalTestCase):

    def test_image_cache_full(self):
        cache = self.useFixture(mounts.SmallDisk(
            os.path.join(self.tmp, 'small-cache'), '8m')).path
        self.conf.config(group='clear', image_cache_path=cache)
        drv = self.make_driver()
        # a 48 MiB image into an 8 MiB cache
        image = self.glance.add(images.disk_image('fs'), 'raw')
        inst = self.make_instance(image)
        err = self.assertRaises(exception.InstanceDeployFailure, drv.spawn,
                                self.context, inst,
                                self.glance.image_meta(image), [], None, {})
        self.assertIn('no space left in the image cache', str(err))
        self.assert_gone(drv, inst)
        self.assertEqual([], [f for f in os.listdir(cache) if f != 'locks'])

    def test_instances_path_full(self):
        instances = self.useFixture(mounts.SmallDisk(
            os.path.join(self.tmp, 'small-instances'), '64k')).path
        self.conf.config(group='clear', instances_path=instances)
        drv = self.make_driver()
        image = self.glance.add(images.disk_image('qcow2'), 'qcow2')
        inst = self.make_instance(image)
        err = self.assertRaises(exception.InstanceDeployFailure, drv.spawn,
                                self.context, inst,
                                self.glance.image_meta(image), [], None, {})
        self.assertIn('cannot create the instance disk', str(err))
        self.assert_gone(drv, inst)
        self.assertEqual([], os.listdir(instances))

    def test_image_cache_full_while_unpacking_a_container(self):
        # The 2 MB archive fits; with 3 MiB its unpacked tree does not, with
        # 5 MiB the tree does but not the packed root filesystem (mkfs).
        for size, stage in (('3m', 'No space left'), ('5m', 'mkfs.ext4')):
            cache = self.useFixture(mounts.SmallDisk(
                os.path.join(self.tmp, 'small-cache-' + size), size)).path
            self.conf.config(group='clear', image_cache_path=cache)
            drv = self.make_driver()
            image = self.glance.add(images.container_image('docker'), 'raw',
                                    container_format='docker')
            inst = self.make_instance(image)
            err = self.assertRaises(
                exception.InstanceDeployFailure, drv.spawn, self.context,
                inst, self.glance.image_meta(image), [], None, {})
            self.assertIn('no space left in the image cache', str(err))
            self.assertIn(stage, str(err.__cause__))
            self.assert_gone(drv, inst)
            rootfs = os.path.join(cache, 'rootfs')
            self.assertEqual([], [f for f in os.listdir(rootfs)
                                  if f not in ('locks', 'by-image',
                                               '.unpack')])
            # the daemon's root-only work directory stays, empty
            self.assertEqual([], os.listdir(os.path.join(rootfs, '.unpack')))
            self.assertEqual(0o700, os.stat(os.path.join(
                rootfs, '.unpack')).st_mode & 0o777)
