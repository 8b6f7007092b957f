"""The pure domain XML builder, without libvirt."""

from xml.etree import ElementTree as ET

import testtools

from nova import objects

from nova_clear import domain
from nova_clear import exception as clear_exc

objects.register_all()
UUID = '11111111-2222-3333-4444-555555555555'


def _instance(**kw):
    values = dict(id=7, uuid=UUID, hostname='web-1', display_name='web 1',
                  project_id='proj', user_id='user')
    values.update(kw)
    return objects.Instance(**values)


def _flavor(**kw):
    values = dict(name='c1', vcpus=2, memory_mb=256, root_gb=1)
    values.update(kw)
    return objects.Flavor(**values)


def _image(props=None):
    return objects.ImageMeta.from_dict({
        'id': 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee', 'disk_format': 'raw',
        'properties': props or {}})


def _boot(**kw):
    values = dict(virt_type='qemu', machine_type='microvm',
                  kernel='/a/vmlinuz', initrd='/a/initrd.img', acpi=True,
                  disk_path='/i/disk', disk_format='qcow2',
                  console_log='/i/console.log')
    values.update(kw)
    return domain.BootConfig(**values)


def _xml(instance=None, flavor=None, image=None, **kw):
    return ET.fromstring(domain.domain_xml(instance or _instance(),
                                           flavor or _flavor(),
                                           image or _image(), _boot(**kw)))


class TestDomainXML(testtools.TestCase):

    def test_microvm_is_a_clear_container(self):
        root = _xml()
        self.assertEqual('qemu', root.get('type'))
        self.assertEqual('instance-00000007', root.findtext('name'))
        self.assertEqual(UUID, root.findtext('uuid'))
        self.assertEqual('256', root.findtext('memory'))
        self.assertEqual('MiB', root.find('memory').get('unit'))
        self.assertEqual('2', root.findtext('vcpu'))
        self.assertEqual('microvm', root.find('os/type').get('machine'))
        self.assertEqual('/a/vmlinuz', root.findtext('os/kernel'))
        self.assertEqual('/a/initrd.img', root.findtext('os/initrd'))
        self.assertIsNone(root.find('os/loader'))  # no firmware at all
        devices = root.find('devices')
        # No USB, no balloon, no graphics, no sound, no input.
        self.assertEqual('none',
                         devices.find("controller[@type='usb']").get('model'))
        self.assertEqual('none', devices.find('memballoon').get('model'))
        for tag in ('graphics', 'video', 'sound', 'input', 'interface'):
            self.assertIsNone(devices.find(tag), tag)
        disk = devices.find('disk')
        self.assertEqual('/i/disk', disk.find('source').get('file'))
        self.assertEqual('qcow2', disk.find('driver').get('type'))
        self.assertEqual('virtio', disk.find('target').get('bus'))
        self.assertEqual('virtio-mmio', disk.find('address').get('type'))
        self.assertEqual('virtio-mmio',
                         devices.find('rng/address').get('type'))
        serial = devices.find('serial')
        self.assertEqual('file', serial.get('type'))
        self.assertEqual('/i/console.log', serial.find('source').get('path'))
        self.assertEqual('on', serial.find('source').get('append'))
        self.assertIsNotNone(root.find('features/acpi'))

    def test_metadata_identifies_the_instance(self):
        root = _xml(host='compute-1')
        inst = root.find('metadata/{%s}instance' % domain.NS_URI)
        self.assertEqual('web 1', inst.findtext('{%s}name' % domain.NS_URI))
        self.assertEqual('c1', inst.find('{%s}flavor' % domain.NS_URI)
                         .get('name'))
        self.assertEqual('compute-1', domain.host_of_metadata(
            ET.tostring(inst, encoding='unicode')))
        self.assertIsNone(domain.host_of_metadata('<x/>'))
        self.assertIsNone(domain.host_of_metadata('not xml'))
        self.assertTrue(domain.instance_uuid_from_metadata(
            ET.tostring(root, encoding='unicode')))
        self.assertFalse(domain.instance_uuid_from_metadata(
            '<domain><name>x</name></domain>'))

    def test_tcg_specifics(self):
        root = _xml(virt_type='qemu', tb_cache_mb=16)
        cmdline = root.findtext('os/cmdline')
        self.assertIn('tsc_early_khz=%d' % domain.TCG_TSC_KHZ, cmdline)
        self.assertEqual('16', root.findtext('features/tcg/tb-cache'))
        self.assertIsNone(root.find('cpu'))

    def test_kvm_specifics(self):
        root = _xml(virt_type='kvm', cpu_mode='host-passthrough')
        self.assertEqual('kvm', root.get('type'))
        self.assertNotIn('tsc_early_khz', root.findtext('os/cmdline'))
        self.assertIsNone(root.find('features/tcg'))
        self.assertEqual('host-passthrough', root.find('cpu').get('mode'))
        self.assertIsNone(_xml(virt_type='kvm', cpu_mode='none').find('cpu'))

    def test_cmdline_carries_agent_arguments_and_image_args_last(self):
        root = _xml(image=_image({'os_command_line':
                                  'init=/app -- --port 80'}),
                    cmdline_extra='loglevel=3')
        cmdline = root.findtext('os/cmdline')
        self.assertIn('console=ttyS0', cmdline)
        self.assertIn('nova_clear.uuid=%s' % UUID, cmdline)
        self.assertIn('nova_clear.hostname=web-1', cmdline)
        self.assertTrue(cmdline.endswith('loglevel=3 init=/app -- --port 80'))

    def test_kernel_without_acpi(self):
        self.assertIsNone(_xml(acpi=False).find('features/acpi'))

    def test_q35_uses_qboot_and_pci(self):
        root = _xml(machine_type='q35', qboot_firmware='/q/qboot.rom')
        self.assertEqual('q35', root.find('os/type').get('machine'))
        loader = root.find('os/loader')
        self.assertEqual('/q/qboot.rom', loader.text)
        self.assertEqual('rom', loader.get('type'))
        self.assertIsNone(root.find('devices/disk/address'))

    def test_rejects_unknown_types(self):
        self.assertRaises(ValueError, _xml, virt_type='xen')
        self.assertRaises(ValueError, _xml, machine_type='pc')

    def test_probe_domain_has_no_disk(self):
        root = ET.fromstring(domain.probe_xml(
            'probe', 'kvm', '/k', '/i', '/log', acpi=True))
        self.assertEqual('kvm', root.get('type'))
        self.assertIn('nova_clear.probe=1', root.findtext('os/cmdline'))
        self.assertIsNone(root.find('devices/disk'))
        self.assertEqual('destroy', root.findtext('on_reboot'))


def _meta(root):
    inst = root.find('metadata/{%s}instance' % domain.NS_URI)
    return ET.tostring(inst, encoding='unicode')


class TestDiskIOTune(testtools.TestCase):

    @staticmethod
    def _iotune(specs):
        return domain.disk_iotune(_flavor(extra_specs=specs))

    def test_extra_specs_become_iotune_in_nova_order(self):
        specs = {'quota:disk_write_iops_sec': '200',
                 'quota:disk_read_bytes_sec': '10485760',
                 'quota:disk_total_iops_sec': '0',
                 'quota:cpu_shares': '10', 'hw:cpu_policy': 'shared'}
        self.assertEqual((('read_bytes_sec', 10485760),
                          ('write_iops_sec', 200)), self._iotune(specs))

    def test_no_specs_no_limits(self):
        self.assertEqual((), self._iotune({}))
        self.assertEqual((), domain.disk_iotune(_flavor()))

    def test_rejects_bad_values(self):
        for bad in ('fast', '-1', '1.5', ''):
            e = self.assertRaises(clear_exc.InvalidFlavorDiskQuota,
                                  self._iotune,
                                  {'quota:disk_read_iops_sec': bad})
            self.assertIn('quota:disk_read_iops_sec', str(e))
            self.assertIn('flavor c1', str(e))

    def test_rejects_total_with_read_or_write(self):
        self.assertRaises(clear_exc.InvalidFlavorDiskQuota, self._iotune,
                          {'quota:disk_total_bytes_sec': '1000',
                           'quota:disk_write_bytes_sec': '10'})
        # Different metrics combine.
        self.assertEqual((('write_bytes_sec', 10), ('total_iops_sec', 5)),
                         self._iotune({'quota:disk_total_iops_sec': '5',
                                       'quota:disk_write_bytes_sec': '10'}))

    @staticmethod
    def _tunes(root):
        tunes = {}
        for disk in root.findall('devices/disk'):
            tune = disk.find('iotune')
            tunes[disk.find('target').get('dev')] = (
                None if tune is None else {e.tag: e.text for e in tune})
        return tunes

    def test_q35_every_instance_disk_but_the_config_drive(self):
        tune = (('read_bytes_sec', 1000), ('total_iops_sec', 50))
        want = {'read_bytes_sec': '1000', 'total_iops_sec': '50'}
        root = _xml(iotune=tune, config_drive_path='/i/disk.config',
                    machine_type='q35')
        self.assertEqual({'vda': want, 'vdb': None}, self._tunes(root))
        root = _xml(iotune=tune, disk_path='/c/rootfs', disk_format='raw',
                    upper_disk_path='/i/upper', machine_type='q35',
                    config_drive_path='/i/disk.config')
        self.assertEqual({'vda': want, 'vdb': want, 'vdc': None},
                         self._tunes(root))
        self.assertIsNone(domain.iotune_of_metadata(_meta(root)))

    def test_microvm_limits_in_metadata_not_iotune(self):
        tune = (('read_bytes_sec', 1000), ('total_iops_sec', 50))
        root = _xml(iotune=tune, disk_path='/c/rootfs', disk_format='raw',
                    upper_disk_path='/i/upper',
                    config_drive_path='/i/disk.config')
        # libvirt could not start it with <iotune> on virtio-mmio.
        self.assertEqual({'vda': None, 'vdb': None, 'vdc': None},
                         self._tunes(root))
        self.assertEqual(
            (('vda', 'vdb'), {'read_bytes_sec': 1000, 'total_iops_sec': 50}),
            domain.iotune_of_metadata(_meta(root)))
        root = _xml(iotune=tune)
        self.assertEqual((('vda',), dict(tune)),
                         domain.iotune_of_metadata(_meta(root)))
        self.assertIsNone(domain.iotune_of_metadata(_meta(_xml())))
        self.assertIsNone(domain.iotune_of_metadata('<not xml'))

    def test_no_iotune_element_without_limits(self):
        self.assertIsNone(_xml().find('devices/disk/iotune'))
