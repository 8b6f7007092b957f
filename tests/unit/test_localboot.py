"""nova_clear.deploy.localboot and ClearDriver.boot_config (no daemons)."""

import os

import configparser

import fixtures
from oslo_config import fixture as config_fixture
import testtools

import nova.conf
from nova import context as nova_context
from nova import exception
from nova.image import glance as nova_glance

from nova_clear.deploy import localboot
from tests.unit import test_driver


class TestLocalGlance(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.path = os.path.join(self.tmp, 'disk.raw')
        with open(self.path, 'wb') as f:
            f.write(b'x' * 4096)
        self.glance = localboot.LocalGlance()
        self.image_id = self.glance.add(self.path, 'raw',
                                        properties={'a': 'b'})
        self.ctx = nova_context.RequestContext('u', 'p', is_admin=True)

    def test_through_nova_glance_api_until_undone(self):
        original = nova_glance.get_default_image_service
        undo = self.glance.install()
        try:
            api = nova_glance.API()
            meta = api.get(self.ctx, self.image_id)
            self.assertEqual(('raw', 4096, 'active'), (
                meta['disk_format'], meta['size'], meta['status']))
            self.assertEqual('b', meta['properties']['a'])
            self.assertNotIn('path', meta)
            dest = os.path.join(self.tmp, 'copy')
            api.download(self.ctx, self.image_id, dest_path=dest)
            with open(dest, 'rb') as f:
                self.assertEqual(b'x' * 4096, f.read())
            self.assertRaises(exception.ImageNotFound, api.get, self.ctx,
                              '5a1ec0de-0000-4000-8000-00000000dead')
        finally:
            undo()
        self.assertIs(original, nova_glance.get_default_image_service)

    def test_create_update_upload_delete_as_snapshots_do(self):
        self.glance.store = os.path.join(self.tmp, 'store')
        undo = self.glance.install()
        try:
            api = nova_glance.API()
            image = api.create(self.ctx, {'name': 'snap', 'properties': {
                'inherited': '1', 'image_type': 'snapshot'}})
            self.assertEqual('queued', image['status'])
            with open(self.path, 'rb') as data:
                api.update(self.ctx, image['id'], {
                    'disk_format': 'qcow2', 'container_format': 'bare',
                    'properties': {'image_location': 'snapshot'}},
                    data)
            meta = api.get(self.ctx, image['id'])
            self.assertEqual(('qcow2', 'active', 4096), (
                meta['disk_format'], meta['status'], meta['size']))
            self.assertEqual({'inherited': '1', 'image_type': 'snapshot',
                              'image_location': 'snapshot'},
                             meta['properties'])
            stored = self.glance.images[image['id']]['path']
            api.delete(self.ctx, image['id'])
            self.assertFalse(os.path.exists(stored))
            self.assertRaises(exception.ImageNotFound, api.get, self.ctx,
                              image['id'])
        finally:
            undo()

    def test_image_meta_and_instance(self):
        meta = self.glance.image_meta(self.image_id)
        self.assertEqual(self.image_id, meta.id)
        inst = localboot.instance(self.ctx,
                                  self.glance.show(None, self.image_id),
                                  0x1234, 'demo-1', memory_mb=256)
        self.assertEqual('instance-00001234', inst.name)
        self.assertEqual(('demo-1', 'p', 'u', self.image_id, 256, 256),
                         (inst.hostname, inst.project_id, inst.user_id,
                          inst.image_ref, inst.memory_mb,
                          inst.flavor.memory_mb))
        self.assertEqual('raw', inst.system_metadata['image_disk_format'])
        self.assertEqual([], list(inst.info_cache.network_info))


class TestConfigure(testtools.TestCase):

    def test_everything_below_work_and_the_daemons_see_the_cache(self):
        conf = self.useFixture(config_fixture.Config(nova.conf.CONF)).conf
        work = self.useFixture(fixtures.TempDir()).path
        localboot.configure(work, '/assets', virt_type='qemu',
                            guest_kernel='minimal')
        self.assertEqual(('/assets', 'qemu', 'minimal'), (
            conf['clear'].assets_path, conf['clear'].virt_type,
            conf['clear'].guest_kernel))
        cache = os.path.join(work, 'cache')
        self.assertEqual(cache, conf['clear'].image_cache_path)
        privsep_conf = os.path.join(work, 'privsep.conf')
        for group in ('nova_sys_admin', 'clear_sys_admin'):
            helper = conf[group].helper_command.split()
            self.assertEqual('privsep-helper', os.path.basename(helper[0]))
            self.assertEqual(['--config-file', privsep_conf], helper[1:])
        cp = configparser.ConfigParser()
        cp.read(privsep_conf)
        self.assertEqual(cache, cp['clear']['image_cache_path'])


class TestBootConfig(test_driver.DriverTestCase):

    def test_what_spawn_boots(self):
        inst = self.instance()
        boot = self.drv.boot_config(inst)
        self.assertEqual(os.path.join(self.inst_dir(inst), 'disk'),
                         boot.disk_path)
        self.assertEqual('qcow2', boot.disk_format)
        self.assertTrue(boot.kernel.endswith('vmlinuz'))
        self.assertEqual((), tuple(boot.interfaces))
        self.spawn(inst)
        with open(os.path.join(self.inst_dir(inst), 'domain.xml')) as f:
            xml = f.read()
        self.assertIn(boot.disk_path, xml)
        self.assertIn(boot.console_log, xml)
