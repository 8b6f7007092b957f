"""The q35 (PCI) variant: its XML, which instances get it, and interface
attach/detach through the driver (libvirt and os-vif faked; the
functional test test_pci_variant hot-plugs into a real QEMU)."""

import os
from xml.etree import ElementTree as ET

import fixtures
import libvirt
import testtools

from nova import exception
from nova import objects

from nova_clear import domain
from nova_clear import domain_pci
from nova_clear import exception as clear_exc
from nova_clear.guest import assets
from nova_clear import hotplug
from nova_clear import vif as clear_vif
from tests.unit import test_domain
from tests.unit import test_driver
from tests.unit import test_network

MAC1, MAC2 = test_network.MAC1, test_network.MAC2
make_vif, make_ovs_vif = test_network.make_vif, test_network.make_ovs_vif
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE


def _image(props=None):
    return objects.ImageMeta.from_dict({'id': test_driver.IMG,
                                        'disk_format': 'raw',
                                        'properties': props or {}})


def _flavor(specs=None):
    return objects.Flavor(name='t', vcpus=1, memory_mb=128, root_gb=1,
                          extra_specs=specs or {})


class TestChoice(testtools.TestCase):

    def test_names(self):
        for name in ('q35', 'pc-q35-7.2', 'PC-Q35-8.0', 'pc-q35'):
            self.assertEqual('q35', domain_pci.variant_of(name))
        self.assertEqual('microvm', domain_pci.variant_of('microvm'))
        for name in ('pc', 'pc-i440fx-7.2', 'virt', 'q3', ''):
            self.assertRaises(domain_pci.UnknownMachineType,
                              domain_pci.variant_of, name)

    def test_default_image_and_flavor(self):
        mt = domain_pci.machine_type
        self.assertEqual('microvm', mt(_flavor(), _image()))
        self.assertEqual('q35', mt(_flavor(), _image(), 'q35'))
        self.assertEqual('q35', mt(_flavor(), _image(
            {'hw_machine_type': 'pc-q35-7.2'})))
        self.assertEqual('q35', mt(_flavor({'clear:machine_type': 'q35'}),
                                   _image()))
        self.assertEqual('microvm', mt(
            _flavor({'clear:machine_type': 'microvm'}), _image(), 'q35'))
        self.assertEqual('q35', mt(
            _flavor({'clear:machine_type': 'q35'}),
            _image({'hw_machine_type': 'q35'})))

    def test_unknown_and_conflicting_are_refused_by_name(self):
        err = self.assertRaises(
            domain_pci.UnknownMachineType, domain_pci.machine_type,
            _flavor(), _image({'hw_machine_type': 'pc-i440fx-7.2'}))
        self.assertIn("image property hw_machine_type asks for machine type "
                      "'pc-i440fx-7.2'", str(err))
        err = self.assertRaises(
            domain_pci.UnknownMachineType, domain_pci.machine_type,
            _flavor({'clear:machine_type': 'q35'}),
            _image({'hw_machine_type': 'microvm'}))
        self.assertIn('clear:machine_type asks for q35 but the image '
                      'property hw_machine_type for microvm', str(err))

    def test_hotplug_only_on_q35(self):
        self.assertTrue(domain_pci.supports_hotplug('pc-q35-7.2'))
        self.assertFalse(domain_pci.supports_hotplug('microvm'))
        self.assertFalse(domain_pci.supports_hotplug('pc-i440fx-7.2'))


class TestXML(testtools.TestCase):

    def test_q35_qboot_pci_devices_and_spare_root_ports(self):
        iface = make_vif()
        root = test_domain._xml(
            machine_type='q35', qboot_firmware='/usr/share/qemu/qboot.rom',
            pcie_ports=3, config_drive_path='/i/disk.config',
            interfaces=(clear_vif.interface(iface),))
        loader = root.find('os/loader')
        self.assertEqual(('rom', '/usr/share/qemu/qboot.rom'),
                         (loader.get('type'), loader.text))
        self.assertIsNotNone(root.find('os/kernel'))
        self.assertEqual([], root.findall('devices//address'))
        ports = [c for c in root.findall('devices/controller')
                 if c.get('model') == 'pcie-root-port']
        # 2 disks + 1 NIC + rng take one each; 3 spare
        self.assertEqual(3 + 4, len(ports))

    def test_microvm_has_no_root_ports(self):
        root = test_domain._xml(pcie_ports=3)
        self.assertEqual([], [c for c in root.findall('devices/controller')
                              if c.get('type') == 'pci'])

    def test_interface_xml_alone(self):
        iface = clear_vif.interface(make_vif())
        el = ET.fromstring(domain.interface_xml(iface, 'pc-q35-7.2'))
        self.assertEqual('direct', el.get('type'))
        self.assertEqual(MAC1.lower(), el.find('mac').get('address'))
        self.assertEqual('virtio', el.find('model').get('type'))
        self.assertIsNone(el.find('address'))
        el = ET.fromstring(domain.interface_xml(iface, 'microvm'))
        self.assertEqual('virtio-mmio', el.find('address').get('type'))


class TestDriverVariant(test_driver.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatch('nova_clear.vif.check_host'))
        self.useFixture(fixtures.MockPatchObject(hotplug, 'DETACH_TIMEOUT',
                                                 0.3))
        self.conf.config(group='clear', num_pcie_ports=2)

    def q35(self, n=1, network_info=None, power_on=True):
        inst = self.instance(n)
        inst.system_metadata = {'image_hw_machine_type': 'q35'}
        self.drv.spawn(self.ctx, inst, _image({'hw_machine_type': 'q35'}),
                       [], None, {}, network_info=network_info,
                       power_on=power_on)
        return inst

    def dom(self, inst):
        return self.conn.domains[inst.uuid]

    def macs(self, inst):
        root = ET.fromstring(self.dom(inst).xml)
        return [m.get('address') for m in
                root.findall('devices/interface/mac')]

    def test_capability_and_trait(self):
        self.assertTrue(self.drv.capabilities['supports_attach_interface'])
        self.assertTrue(self.drv.capabilities_as_traits()[
            'COMPUTE_NET_ATTACH_INTERFACE'])

    def test_spawn_by_image_property_or_flavor(self):
        inst = self.q35()
        root = ET.fromstring(self.dom(inst).xml)
        self.assertEqual('q35', root.find('os/type').get('machine'))
        self.assertEqual(2 + 2, len(root.findall('devices/controller'
                                                 "[@model='pcie-root-port']")))
        inst2 = self.instance(2)
        inst2.flavor.extra_specs = {'clear:machine_type': 'q35'}
        self.spawn(inst2)
        self.assertEqual('q35', ET.fromstring(self.dom(inst2).xml).find(
            'os/type').get('machine'))

    def test_unknown_machine_type_creates_nothing(self):
        inst = self.instance()
        err = self.assertRaises(
            exception.InstanceDeployFailure, self.drv.spawn, self.ctx, inst,
            _image({'hw_machine_type': 'pc'}), [], None, {})
        self.assertIn("machine type 'pc'", str(err))
        self.assertEqual({}, self.conn.domains)
        self.assertFalse(os.path.exists(self.inst_dir(inst)))

    def test_assets_without_virtio_pci_refuse_q35_and_leave_nothing(self):
        path = os.path.join(self.tmp, 'assets')
        assets.write_manifest(path, 'vmlinuz', 'initrd.img', 'old',
                              acpi=True, virtio_mmio_cmdline=False,
                              virtio_pci=False)
        inst = self.instance()
        err = self.assertRaises(
            exception.InstanceDeployFailure, self.drv.spawn, self.ctx, inst,
            _image({'hw_machine_type': 'q35'}), [], None, {})
        self.assertIn('kernel old in %s has no virtio-pci' % path, str(err))
        self.assertEqual({}, self.conn.domains)
        self.assertFalse(os.path.exists(self.inst_dir(inst)))
        self.spawn(self.instance(2))   # microvm boots

    def test_microvm_refuses_attach_and_detach_saying_how(self):
        inst = self.instance()
        self.spawn(inst)
        before = self.dom(inst).xml
        for call in (lambda: self.drv.attach_interface(
                self.ctx, inst, self.image_meta(), make_vif()),
                lambda: self.drv.detach_interface(self.ctx, inst,
                                                  make_vif())):
            err = self.assertRaises(exception.AttachInterfaceNotSupported,
                                    call)
            self.assertIn('microvm variant', str(err))
            self.assertIn('clear:machine_type=q35', str(err))
            self.assertIn('hw_machine_type=q35', str(err))
        self.assertEqual(before, self.dom(inst).xml)
        self.assertEqual([], self.dom(inst).device_calls)

    def test_attach_detach_live_and_persistent(self):
        boot_vif = make_vif('port-1', MAC1, active=True)
        inst = self.q35(network_info=[boot_vif])
        vif = make_vif('port-2', MAC2, active=True)
        self.drv.attach_interface(self.ctx, inst, self.image_meta(), vif)
        self.assertEqual([MAC1.lower(), MAC2.lower()], self.macs(inst))
        self.assertEqual([('attach', CONFIG | LIVE)],
                         self.dom(inst).device_calls)
        with open(os.path.join(self.inst_dir(inst), 'domain.xml')) as f:
            self.assertIn(MAC2.lower(), f.read())
        # again: nothing more
        self.drv.attach_interface(self.ctx, inst, self.image_meta(), vif)
        self.assertEqual(1, len(self.dom(inst).device_calls))
        # a hard reboot regenerates the XML from network_info: still q35,
        # the port there
        self.drv.reboot(self.ctx, inst, [boot_vif, vif], 'HARD')
        root = ET.fromstring(self.dom(inst).xml)
        self.assertEqual('q35', root.find('os/type').get('machine'))
        self.assertEqual([MAC1.lower(), MAC2.lower()], self.macs(inst))
        self.assertIn('nova_clear.if=%s' % MAC2.lower(),
                      root.findtext('os/cmdline'))
        self.drv.detach_interface(self.ctx, inst, vif)
        self.assertEqual([MAC1.lower()], self.macs(inst))
        self.assertEqual(('detach', CONFIG | LIVE),
                         self.dom(inst).device_calls[-1])
        # gone already: nothing to do
        self.drv.detach_interface(self.ctx, inst, vif)
        self.assertEqual(('detach', CONFIG | LIVE),
                         self.dom(inst).device_calls[-1])

    def test_stopped_instance_definition_only(self):
        inst = self.q35(power_on=False)
        vif = make_vif('port-2', MAC2)
        self.drv.attach_interface(self.ctx, inst, self.image_meta(), vif)
        self.drv.detach_interface(self.ctx, inst, vif)
        self.assertEqual([('attach', CONFIG), ('detach', CONFIG)],
                         self.dom(inst).device_calls)
        self.assertEqual([], self.macs(inst))

    def test_refused_port_and_failed_attach_leave_nothing(self):
        inst = self.q35()
        self.assertRaises(clear_exc.PortNotPluggable,
                          self.drv.attach_interface, self.ctx, inst,
                          self.image_meta(), make_vif(vif_type='bridge'))
        self.dom(inst).fail_attach = 'no free PCI slot'
        err = self.assertRaises(clear_exc.GuestOperationFailed,
                                self.drv.attach_interface, self.ctx, inst,
                                self.image_meta(), make_vif())
        self.assertIn('no free PCI slot', str(err))
        self.assertEqual([], self.macs(inst))

    def test_guest_keeping_the_nic_fails_the_detach(self):
        inst = self.q35()
        vif = make_vif()
        self.drv.attach_interface(self.ctx, inst, self.image_meta(), vif)
        self.dom(inst).guest_keeps_devices = True
        err = self.assertRaises(clear_exc.GuestOperationFailed,
                                self.drv.detach_interface, self.ctx, inst,
                                vif)
        self.assertIn('did not release NIC %s' % MAC1.lower(), str(err))


class TestDriverVariantOsVif(test_driver.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.calls = []
        self.useFixture(fixtures.MonkeyPatch(
            'nova_clear.vif_plug._initialized', False))
        self.useFixture(fixtures.MockPatch('os_vif.initialize'))
        self.plug = self.useFixture(fixtures.MockPatch(
            'os_vif.plug', side_effect=lambda vif, info: self.calls.append(
                ('plug', vif.id)))).mock
        self.useFixture(fixtures.MockPatch(
            'os_vif.unplug', side_effect=lambda vif, info: self.calls.append(
                ('unplug', vif.id))))

    def test_ovs_port_plugged_after_attach_unplugged_after_detach(self):
        inst = self.instance()
        inst.flavor.extra_specs = {'clear:machine_type': 'q35'}
        self.spawn(inst)
        dom = self.conn.domains[inst.uuid]
        real = dom.attachDeviceFlags

        def attach(xml, flags):
            self.calls.append(('attach',))
            return real(xml, flags)
        dom.attachDeviceFlags = attach
        vif = make_ovs_vif(active=True)
        self.drv.attach_interface(self.ctx, inst, self.image_meta(), vif)
        # libvirt makes the tap of a create_port port: plugged after
        self.assertEqual([('attach',), ('plug', vif['id'])], self.calls)
        self.drv.detach_interface(self.ctx, inst, vif)
        self.assertEqual(('unplug', vif['id']), self.calls[-1])

    def test_failed_plug_removes_the_nic_and_unplugs(self):
        inst = self.instance()
        inst.flavor.extra_specs = {'clear:machine_type': 'q35'}
        self.spawn(inst)
        self.plug.side_effect = RuntimeError('ovsdb down')
        vif = make_ovs_vif(active=True)
        self.assertRaises(RuntimeError, self.drv.attach_interface, self.ctx,
                          inst, self.image_meta(), vif)
        self.assertNotIn(vif['address'].lower(),
                         self.conn.domains[inst.uuid].xml)
        self.assertEqual(('unplug', vif['id']), self.calls[-1])
