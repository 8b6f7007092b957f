"""Rescue: the rescue domain from the pure builder, and rescue/unrescue
through the driver against the fake libvirt."""

import os
from unittest import mock
from xml.etree import ElementTree as ET

import testtools

from nova.compute import power_state
from nova import exception
from nova import objects

from nova_clear import domain
from nova_clear import exception as clear_exc
from nova_clear import rescue
from nova_clear import storage
from tests.unit import test_domain
from tests.unit import test_driver


def _disks(xml):
    root = ET.fromstring(xml)
    return [(d.find('target').get('dev'), d.find('source').get('file'),
             d.find('driver').get('type'), d.find('readonly') is not None)
            for d in root.findall('devices/disk')]


def _cmdline(xml):
    return ET.fromstring(xml).find('os/cmdline').text.split()


def _image(props=None):
    return objects.ImageMeta.from_dict({
        'id': 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee', 'disk_format': 'raw',
        'properties': props or {}})


class TestRescueDomain(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.files = storage.InstanceFiles('/i', test_domain.UUID)
        self.rfiles = rescue.rescue_files(self.files)

    def _xml(self, base, stable=False, image=None, container=False):
        with mock.patch.object(storage.InstanceFiles, 'rootfs_ref',
                               autospec=True,
                               side_effect=lambda f: '/cache/rootfs/x'
                               if (f is self.files and container) else None):
            boot = rescue.boot_config(base, self.files, self.rfiles, stable)
        return domain.domain_xml(test_domain._instance(),
                                 test_domain._flavor(), image or _image(),
                                 boot)

    def test_disk_image_rescue_of_disk_instance(self):
        base = test_domain._boot(disk_path=self.rfiles.disk,
                                 console_log=self.rfiles.console_log)
        xml = self._xml(base, image=_image(
            {'os_command_line': 'init=/bin/sh'}))
        self.assertEqual([
            ('vda', '/i/%s/rescue/disk' % test_domain.UUID, 'qcow2', False),
            ('vdb', '/i/%s/disk' % test_domain.UUID, 'qcow2', False)],
            _disks(xml))
        args = _cmdline(xml)
        self.assertNotIn('nova_clear.mode=container', args)
        self.assertFalse([a for a in args if a.startswith('nova_clear.root')])
        self.assertEqual('init=/bin/sh', args[-1])
        # the rescue boot is in the instance's own console log
        self.assertIn('/i/%s/console.log' % test_domain.UUID, xml)

    def test_container_rescue_of_container_instance(self):
        base = test_domain._boot(disk_path='/cache/rootfs/rescue',
                                 disk_format='raw',
                                 upper_disk_path=self.rfiles.upper)
        xml = self._xml(base, container=True)
        d = '/i/%s' % test_domain.UUID
        self.assertEqual([
            ('vda', '/cache/rootfs/rescue', 'raw', True),
            ('vdb', d + '/rescue/upper', 'raw', False),
            ('vdc', d + '/upper', 'raw', False)], _disks(xml))
        self.assertIn('nova_clear.mode=container', _cmdline(xml))

    def test_disk_image_rescue_of_container_instance(self):
        base = test_domain._boot(disk_path=self.rfiles.disk)
        xml = self._xml(base, container=True)
        self.assertEqual(
            ('vdb', '/i/%s/upper' % test_domain.UUID, 'raw', False),
            _disks(xml)[1])
        self.assertNotIn('nova_clear.mode=container', _cmdline(xml))

    def test_stable_device_rescue_keeps_the_instance_disks(self):
        d = '/i/%s' % test_domain.UUID
        base = test_domain._boot(disk_path='/cache/rootfs/x',
                                 disk_format='raw',
                                 upper_disk_path=d + '/upper',
                                 config_drive_path=d + '/disk.config')
        image = _image({'hw_rescue_bus': 'virtio',
                        'os_command_line': 'init=/bin/sh'})
        xml = self._xml(base, stable=True, image=image, container=True)
        self.assertEqual([
            ('vda', '/cache/rootfs/x', 'raw', True),
            ('vdb', d + '/upper', 'raw', False),
            ('vdc', d + '/disk.config', 'raw', True),
            ('vdd', d + '/rescue/disk', 'qcow2', False)], _disks(xml))
        args = _cmdline(xml)
        self.assertIn('nova_clear.root=/dev/vdd', args)
        self.assertIn('nova_clear.configdrive=/dev/vdc', args)
        self.assertNotIn('nova_clear.mode=container', args)
        self.assertEqual('init=/bin/sh', args[-1])

    def test_stable_device_rescue_of_container_image_refused(self):
        base = test_domain._boot()
        with mock.patch.object(storage.InstanceFiles, 'rootfs_ref',
                               return_value='/cache/rootfs/x'):
            self.assertRaises(exception.UnsupportedRescueImage,
                              rescue.boot_config, base, self.files,
                              self.rfiles, True)

    def test_stable_device_properties(self):
        self.assertFalse(rescue.stable_device(_image()))
        self.assertTrue(rescue.stable_device(
            _image({'hw_rescue_device': 'disk'})))
        self.assertTrue(rescue.stable_device(
            _image({'hw_rescue_bus': 'virtio', 'hw_rescue_device': 'disk'})))
        for bus in ('scsi', 'ide', 'usb'):
            self.assertRaises(exception.UnsupportedRescueBus,
                              rescue.stable_device,
                              _image({'hw_rescue_bus': bus}))
        self.assertRaises(exception.UnsupportedRescueDevice,
                          rescue.stable_device,
                          _image({'hw_rescue_device': 'cdrom'}))


class TestDriverRescue(test_driver.DriverTestCase):

    def _domain_xml(self, inst):
        return self.conn.domains[inst.uuid].xml

    def _rescue(self, inst, image_meta=None):
        self.drv.rescue(self.ctx, inst, [], image_meta or self.image_meta(),
                        'pw', None, None)

    def test_rescue_and_unrescue(self):
        inst = self.instance()
        self.spawn(inst)
        original = self._domain_xml(inst)
        d = self.inst_dir(inst)
        before = sorted(os.listdir(d))
        self._rescue(inst)
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)
        self.assertEqual([('vda', d + '/rescue/disk'), ('vdb', d + '/disk')],
                         [x[:2] for x in _disks(self._domain_xml(inst))])
        self.assertTrue(os.path.exists(os.path.join(d, 'unrescue.xml')))
        # the instance's own domain.xml is the original's
        with open(os.path.join(d, 'domain.xml')) as f:
            self.assertEqual(original, f.read())
        self.assertRaises(exception.InstanceNotRescuable, self._rescue, inst)
        # a hard reboot in rescue boots the rescue again
        self.drv.reboot(self.ctx, inst, [], 'HARD')
        self.assertIn('rescue/disk', self._domain_xml(inst))

        self.drv.unrescue(self.ctx, inst)
        self.assertEqual(original, self._domain_xml(inst))
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)
        # no rescue files remain
        self.assertEqual(before, sorted(os.listdir(d)))
        self.assertRaises(exception.InstanceNotInRescueMode,
                          self.drv.unrescue, self.ctx, inst)

    def test_failed_start_restores_the_running_original(self):
        inst = self.instance()
        self.spawn(inst)
        original = self._domain_xml(inst)
        before = sorted(os.listdir(self.inst_dir(inst)))
        real_define = self.drv.host.define

        def define(xml):
            guest = real_define(xml)
            if 'rescue/disk' in xml:
                self.conn.domains[inst.uuid].fail_start = 'no rescue'
            return guest
        with mock.patch.object(self.drv.host, 'define', side_effect=define):
            self.assertRaises(clear_exc.ClearContainerStartFailed,
                              self._rescue, inst)
        self.assertEqual(original, self._domain_xml(inst))
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)
        self.assertEqual(before, sorted(os.listdir(self.inst_dir(inst))))

    def test_failed_disks_leave_the_instance_untouched(self):
        inst = self.instance()
        self.spawn(inst)
        original = self._domain_xml(inst)
        before = sorted(os.listdir(self.inst_dir(inst)))
        with mock.patch('nova_clear.images.disk.create_overlay',
                        side_effect=exception.InstanceDeployFailure(
                            reason='no space')):
            self.assertRaises(exception.InstanceDeployFailure,
                              self._rescue, inst)
        self.assertEqual(original, self._domain_xml(inst))
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)
        self.assertEqual(before, sorted(os.listdir(self.inst_dir(inst))))

    def test_unsupported_bus_refused_before_anything(self):
        inst = self.instance()
        self.spawn(inst)
        before = sorted(os.listdir(self.inst_dir(inst)))
        image = objects.ImageMeta.from_dict({
            'id': test_driver.IMG, 'disk_format': 'raw',
            'properties': {'hw_rescue_bus': 'scsi'}})
        self.assertRaises(exception.UnsupportedRescueBus, self._rescue, inst,
                          image)
        self.assertEqual(before, sorted(os.listdir(self.inst_dir(inst))))

    def test_destroy_in_rescue_removes_everything(self):
        inst = self.instance()
        self.spawn(inst)
        self._rescue(inst)
        self.drv.destroy(self.ctx, inst, [])
        self.assertEqual({}, self.conn.domains)
        self.assertFalse(os.path.exists(self.inst_dir(inst)))
