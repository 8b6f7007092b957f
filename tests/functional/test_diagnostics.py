"""Diagnostics, crash dump (NMI), disk I/O limits and CPU traits on real
libvirt + QEMU."""

import json

from nova.compute import power_state
from nova.compute import provider_tree
from nova import exception
from oslo_utils import timeutils

from tests.functional import base
from tests.functional import images
from tests.functional import provider_net
from tests.functional import test_network


class TestDiagnostics(base.FunctionalTestCase):

    def _spawn(self, drv, image, extra_specs=None, **kw):
        inst = self.make_instance(image, **kw)
        inst.flavor.extra_specs = extra_specs or {}
        inst.launched_at = timeutils.utcnow()
        drv.spawn(self.context, inst, self.glance.image_meta(image), [],
                  None, {}, network_info=None)
        self.addCleanup(self._destroy_quietly, drv, inst)
        return inst

    def test_instance_diagnostics(self):
        drv = self.make_driver()
        image = self.glance.add(images.disk_image('fs'), 'raw')
        inst = self._spawn(drv, image, memory_mb=192, vcpus=2)
        self.wait_ready(drv, inst)

        diags = drv.get_instance_diagnostics(inst)
        self.assertEqual('running', diags.state)
        self.assertEqual('libvirt', diags.driver)
        self.assertEqual('qemu', diags.hypervisor)
        self.assertEqual('linux', diags.hypervisor_os)
        self.assertFalse(diags.config_drive)
        self.assertGreaterEqual(diags.uptime, 0)
        self.assertEqual(192, diags.memory_details.maximum)
        self.assertEqual(2, diags.num_cpus)
        self.assertEqual([0, 1], [c.id for c in diags.cpu_details])
        self.assertGreater(sum(c.time for c in diags.cpu_details), 0)
        self.assertEqual(1, diags.num_disks)
        # The guest booted from its disk: it read it.
        self.assertGreater(diags.disk_details[0].read_bytes, 0)
        self.assertGreater(diags.disk_details[0].read_requests, 0)
        self.assertEqual(0, diags.num_nics)
        # The API turns it into a dict; it must serialise.
        self.assertIn('cpu_details',
                      diags.obj_to_primitive()['nova_object.data'])

        legacy = drv.get_diagnostics(inst)
        self.assertEqual(192 * 1024, legacy['memory'])
        self.assertGreater(legacy['vda_read'], 0)
        self.assertIn('cpu1_time', legacy)
        self.assertIn('memory-rss', legacy)

    def test_host_uptime(self):
        drv = self.make_driver(init=False)
        text = drv.get_host_uptime()
        self.assertIn(' up ', text)
        self.assertIn('load average: ', text)

    def test_trigger_crash_dump_sends_nmi(self):
        drv = self.make_driver()
        image = self.glance.add(images.disk_image('fs'), 'raw')
        inst = self._spawn(drv, image)
        self.wait_ready(drv, inst)
        drv.trigger_crash_dump(inst)
        # The guest kernel gets the NMI; microvm has no NMI status port
        # (it reads 0xff), so Linux takes it for a PCI SERR, and without
        # kernel.panic_on_unrecovered_nmi it carries on.
        text = self.wait_console(drv, inst, 'Dazed and confused')
        self.assertIn('NMI: ', text)
        self.assertEqual(power_state.RUNNING, drv.get_info(inst).state)
        drv.power_off(inst)
        self.assertRaises(exception.InstanceNotRunning,
                          drv.trigger_crash_dump, inst)

    def test_disk_iotune_from_flavor(self):
        drv = self.make_driver()
        image = self.glance.add(images.container_image('docker'), 'raw',
                                container_format='docker')
        specs = {'quota:disk_read_bytes_sec': '20971520',
                 'quota:disk_write_iops_sec': '300',
                 'quota:disk_total_iops_sec': '0'}
        inst = self._spawn(drv, image, extra_specs=specs)
        # QEMU forgets them when it exits: every start applies them.
        for restart in (False, True):
            if restart:
                drv.reboot(self.context, inst, None, 'HARD')
            guest = drv.host.lookup(inst.uuid)
            for dev in ('vda', 'vdb'):
                tune = guest.block_io_tune(dev)
                self.assertEqual(20971520, tune['read_bytes_sec'], dev)
                self.assertEqual(300, tune['write_iops_sec'], dev)
                self.assertEqual(0, tune['total_iops_sec'], dev)
                self.assertEqual(0, tune['write_bytes_sec'], dev)
            # Not the config drive (none here) nor other devices.
            self.assertIsNone(guest.block_io_tune('vdc'))

    def test_cpu_traits_of_tcg_guests(self):
        drv = self.make_driver()
        tree = provider_tree.ProviderTree()
        tree.new_root(self.conf.conf.host, 'rp')
        drv.update_provider_tree(tree, self.conf.conf.host)
        traits = tree.data(self.conf.conf.host).traits
        # QEMU's qemu64 model, whatever the host has.
        self.assertIn('HW_CPU_X86_SSE2', traits)
        self.assertIn('HW_ARCH_X86_64', traits)
        self.assertNotIn('HW_CPU_X86_AVX2', traits)
        self.assertIn('CUSTOM_CLEAR_CONTAINERS', traits)


class TestNicDiagnostics(base.FunctionalTestCase):

    def setUp(self):
        super().setUp()
        self.net = self.useFixture(provider_net.ProviderNetwork())

    def test_nic_counters(self):
        drv = self.make_driver()
        vif = test_network.make_vif(
            port='port-31', mac='fa:16:3e:79:00:1f', source=self.net.lower,
            mtu=1500, cidr='%s.0/24' % self.net.prefix,
            ip=self.net.address(31), gateway=self.net.gateway,
            dns=(self.net.gateway,), active=True)
        image = self.glance.add(
            images.container_image('docker'), 'raw',
            container_format='docker',
            properties={'clear_cmd': json.dumps([test_network.SERVER_CMD]),
                        'clear_user': 'root'})
        inst = self.make_instance(image)
        drv.spawn(self.context, inst, self.glance.image_meta(image), [],
                  None, {}, network_info=[vif])
        self.addCleanup(self._destroy_quietly, drv, inst)
        self.wait_console(drv, inst, 'serving')
        self.net.http_get('http://%s/' % self.net.address(31))

        diags = drv.get_instance_diagnostics(inst)
        self.assertEqual(1, diags.num_nics)
        nic = diags.nic_details[0]
        self.assertEqual('fa:16:3e:79:00:1f', nic.mac_address)
        # The page went out, the request came in.
        self.assertGreater(nic.rx_octets, 0)
        self.assertGreater(nic.tx_octets, 0)
        self.assertGreater(nic.tx_packets, 0)
        # The container's writable disk and its image's root filesystem.
        self.assertEqual(2, diags.num_disks)
