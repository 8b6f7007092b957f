"""Diagnostics, crash dump, disk I/O limits and CPU traits through the
driver, on the fake libvirt (tests/functional/test_diagnostics.py runs them
on libvirtd + QEMU)."""

import os

import fixtures
import testtools

import libvirt
from nova.compute import provider_tree
from nova import exception
from oslo_utils import timeutils

from nova_clear import diagnostics
from nova_clear import exception as clear_exc
from nova_clear import libvirt_guest
from tests.unit import fake_libvirt
from tests.unit import test_driver

NIC_XML = ("<interface type='ethernet'><mac address='fa:16:3e:00:00:01'/>"
           "<target dev='tap1'/></interface>"
           "<interface type='direct'><mac address='fa:16:3e:00:00:02'/>"
           "</interface></devices>")


class DiagTestCase(test_driver.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatch(
            'nova_clear.libvirt_guest.libvirt_qemu.qemuMonitorCommand',
            side_effect=fake_libvirt.qemu_monitor_command))

    def running(self, n=1, nics=False, **flavor):
        inst = self.instance(n)
        for key, value in flavor.items():
            setattr(inst.flavor, key, value)
        if nics:
            # As if defined with two ports: one tap, one without a target.
            real = self.conn.defineXML

            def define(xml):
                return real(xml.replace('</devices>', NIC_XML))
            self.conn.defineXML = define
        self.spawn(inst)
        return inst, self.conn.domains[inst.uuid]


class TestInstanceDiagnostics(DiagTestCase):

    def test_object(self):
        inst, dom = self.running(nics=True, vcpus=2)
        inst.launched_at = timeutils.utcnow()
        d = self.drv.get_instance_diagnostics(inst)
        self.assertEqual(('running', 'libvirt', 'qemu', 'linux', False),
                         (d.state, d.driver, d.hypervisor, d.hypervisor_os,
                          d.config_drive))
        self.assertLess(d.uptime, 5)
        self.assertEqual((128, 128), (d.memory_details.maximum,
                                      d.memory_details.used))
        self.assertEqual([(0, 1000000), (1, 2000000)],
                         [(c.id, c.time) for c in d.cpu_details])
        self.assertEqual(1, d.num_disks)
        disk = d.disk_details[0]
        self.assertEqual((1, 1000, 0, 0, 0),
                         (disk.read_requests, disk.read_bytes,
                          disk.write_requests, disk.write_bytes,
                          disk.errors_count))
        self.assertEqual(2, d.num_nics)
        tap, direct = d.nic_details
        self.assertEqual(('fa:16:3e:00:00:01', 100, 2, 200, 3, 1),
                         (tap.mac_address, tap.rx_octets, tap.rx_packets,
                          tap.tx_octets, tap.tx_packets, tap.tx_drop))
        # No host device, no counters: listed with its MAC only.
        self.assertEqual('fa:16:3e:00:00:02', direct.mac_address)
        self.assertIsNone(direct.rx_octets)

    def test_q35_disk_counters_from_libvirt(self):
        self.conf.config(group='clear', machine_type='q35')
        inst, dom = self.running()
        dom.block['vda'] = (7, 7000, 3, 3000, -1)
        disk = self.drv.get_instance_diagnostics(inst).disk_details[0]
        self.assertEqual((7000, 3000, -1), (disk.read_bytes,
                                            disk.write_bytes,
                                            disk.errors_count))

    def test_not_launched_yet_and_gone(self):
        inst, dom = self.running()
        self.assertIsNone(self.drv.get_instance_diagnostics(inst).uptime)
        self.drv.destroy(self.ctx, inst, None)
        self.assertRaises(exception.InstanceNotFound,
                          self.drv.get_instance_diagnostics, inst)

    def test_stopped_meanwhile_leaves_counters_out(self):
        inst, dom = self.running()
        dom.st = libvirt.VIR_DOMAIN_SHUTOFF
        d = self.drv.get_instance_diagnostics(inst)
        self.assertEqual('shutdown', d.state)
        self.assertEqual((0, 0), (d.num_cpus, d.num_disks))

    def test_legacy_dict(self):
        inst, dom = self.running(nics=True)
        self.assertEqual({
            'cpu0_time': 1000000,
            'vda_read_req': 1, 'vda_read': 1000, 'vda_write_req': 0,
            'vda_write': 0, 'vda_errors': 0,
            'tap1_rx': 100, 'tap1_rx_packets': 2, 'tap1_rx_errors': 0,
            'tap1_rx_drop': 0, 'tap1_tx': 200, 'tap1_tx_packets': 3,
            'tap1_tx_errors': 0, 'tap1_tx_drop': 1,
            'memory': 131072, 'memory-actual': 131072, 'memory-rss': 54321,
        }, self.drv.get_diagnostics(inst))


class TestHostUptime(testtools.TestCase):

    def _proc(self, uptime, loadavg='0.50 0.25 0.10 1/99 1234'):
        path = self.useFixture(fixtures.TempDir()).path
        for name, text in (('uptime', uptime), ('loadavg', loadavg)):
            with open(os.path.join(path, name), 'w') as f:
                f.write(text + '\n')
        return path

    def test_like_uptime(self):
        text = diagnostics.host_uptime(self._proc('273721.52 100.0'), now=0)
        self.assertRegex(text, r'^ \d\d:\d\d:\d\d up 3 days,  4:02,  '
                               r'load average: 0.50, 0.25, 0.10\n$')
        text = diagnostics.host_uptime(self._proc('125.0 1.0'))
        self.assertIn(' up 2 min,  load average', text)
        text = diagnostics.host_uptime(self._proc('86460 1'))
        self.assertIn(' up 1 day, 1 min,', text)

    def test_driver_reads_this_host(self):
        self.assertIn(' up ', test_driver.clear_driver.ClearDriver
                      .get_host_uptime())


class TestCrashDump(DiagTestCase):

    def test_nmi(self):
        inst, dom = self.running()
        self.drv.trigger_crash_dump(inst)
        self.assertEqual(1, dom.nmis)

    def test_not_running(self):
        inst, dom = self.running()
        dom.st = libvirt.VIR_DOMAIN_SHUTOFF
        self.assertRaises(exception.InstanceNotRunning,
                          self.drv.trigger_crash_dump, inst)

    def test_not_supported(self):
        inst, dom = self.running()
        dom.nmi_error = libvirt.VIR_ERR_NO_SUPPORT
        self.assertRaises(exception.TriggerCrashDumpNotSupported,
                          self.drv.trigger_crash_dump, inst)
        dom.nmi_error = libvirt.VIR_ERR_INTERNAL_ERROR
        self.assertRaises(libvirt.libvirtError,
                          self.drv.trigger_crash_dump, inst)


class TestDiskLimits(DiagTestCase):

    SPECS = {'quota:disk_read_bytes_sec': '1048576',
             'quota:disk_write_iops_sec': '100'}

    def test_microvm_limits_applied_by_qemu_on_every_start(self):
        inst, dom = self.running(extra_specs=dict(self.SPECS))
        want = {'bps': 0, 'bps_rd': 1048576, 'bps_wr': 0, 'iops': 0,
                'iops_rd': 0, 'iops_wr': 100}
        self.assertEqual({'virtio-disk0': want}, dom.throttle)
        guest = self.drv.host.lookup(inst.uuid)
        self.assertEqual(1048576, guest.block_io_tune('vda')
                         ['read_bytes_sec'])
        self.drv.reboot(self.ctx, inst, None, 'HARD')
        # (the fake's redefined domain is a new object, new QEMU)
        dom = self.conn.domains[inst.uuid]
        self.assertEqual({'virtio-disk0': want}, dom.throttle)

    def test_q35_limits_are_libvirt_iotune(self):
        self.conf.config(group='clear', machine_type='q35')
        inst, dom = self.running(extra_specs=dict(self.SPECS))
        self.assertEqual({}, dom.throttle)
        self.assertEqual({'read_bytes_sec': 1048576, 'write_iops_sec': 100},
                         self.drv.host.lookup(inst.uuid)
                         .block_io_tune('vda'))

    def test_no_limits_no_qmp(self):
        inst, dom = self.running()
        self.assertEqual({}, dom.throttle)

    def test_qemu_refuses_limits_domain_stopped(self):
        def refuse(domain, command, flags):
            raise fake_libvirt._error(libvirt.VIR_ERR_INTERNAL_ERROR,
                                      'throttling refused')
        self.useFixture(fixtures.MockPatch(
            'nova_clear.libvirt_guest.libvirt_qemu.qemuMonitorCommand',
            side_effect=refuse))
        inst = self.instance(1)
        inst.flavor.extra_specs = dict(self.SPECS)
        e = self.assertRaises(clear_exc.ClearContainerStartFailed,
                              self.spawn, inst)
        self.assertIn('throttling refused', str(e))
        self.assertEqual({}, self.conn.domains)

    def test_bad_spec_fails_spawn_naming_it(self):
        inst = self.instance(1)
        inst.flavor.extra_specs = {'quota:disk_read_iops_sec': 'lots'}
        e = self.assertRaises(clear_exc.InvalidFlavorDiskQuota,
                              self.spawn, inst)
        self.assertIn('quota:disk_read_iops_sec', str(e))
        self.assertEqual({}, self.conn.domains)


class TestCpuTraits(DiagTestCase):

    def _traits(self):
        tree = provider_tree.ProviderTree()
        tree.new_root('fakehost', 'rp')
        tree.add_traits('fakehost', 'HW_CPU_X86_AVX512F', 'CUSTOM_MINE')
        self.drv.update_provider_tree(tree, 'fakehost')
        return tree.data('fakehost').traits

    def test_tcg_reports_qemu64_not_the_host(self):
        traits = self._traits()
        self.assertTrue({'HW_CPU_X86_SSE', 'HW_CPU_X86_SSE2',
                         'HW_CPU_X86_SVM', 'HW_ARCH_X86_64',
                         'CUSTOM_MINE', 'CUSTOM_CLEAR_CONTAINERS'} <= traits)
        # The host's AVX2 is not the TCG guest's; stale CPU traits go.
        self.assertNotIn('HW_CPU_X86_AVX2', traits)
        self.assertNotIn('HW_CPU_X86_AVX512F', traits)

    def test_kvm_host_passthrough_reports_the_expanded_host_cpu(self):
        self.drv.virt_type = 'kvm'
        traits = self._traits()
        # Listed by libvirt (avx2, aes, ssse3) and the model's (sse2).
        self.assertTrue({'HW_CPU_X86_AVX2', 'HW_CPU_X86_AESNI',
                         'HW_CPU_X86_SSSE3', 'HW_CPU_X86_SSE2'} <= traits)
        self.assertNotIn('HW_CPU_X86_SVM', traits)  # policy='disable'

    def test_kvm_without_cpu_mode_is_qemu64(self):
        self.conf.config(group='clear', cpu_mode='none')
        self.drv.virt_type = 'kvm'
        self.assertNotIn('HW_CPU_X86_AVX2', self._traits())

    def test_without_baseline_only_listed_features(self):
        self.conn.baseline = None
        self.drv.virt_type = 'kvm'
        traits = self._traits()
        self.assertIn('HW_CPU_X86_AVX2', traits)
        self.assertNotIn('HW_CPU_X86_SSE2', traits)

    def test_found_once(self):
        calls = []
        real = self.conn.baselineCPU
        self.conn.baselineCPU = lambda *a: calls.append(a) or real(*a)
        self._traits()
        self._traits()
        self.assertEqual(1, len(calls))


class TestGuestStats(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatch(
            'nova_clear.libvirt_guest.libvirt_qemu.qemuMonitorCommand',
            side_effect=fake_libvirt.qemu_monitor_command))

    def test_devices(self):
        disks, nics = diagnostics.devices(
            "<domain><devices><disk><target dev='vda'/></disk>"
            "<disk><target dev='vdb'/></disk>" + NIC_XML + "</domain>")
        self.assertEqual(['vda', 'vdb'], disks)
        self.assertEqual([('fa:16:3e:00:00:01', 'tap1'),
                          ('fa:16:3e:00:00:02', None)], nics)

    def test_errors_are_no_stats(self):
        dom = fake_libvirt.FakeConnection().defineXML(
            "<domain><name>x</name><uuid>u</uuid></domain>")
        guest = libvirt_guest.Guest(dom)
        # Shut off: libvirt refuses every counter.
        self.assertIsNone(guest.vcpu_times())
        self.assertIsNone(guest.block_stats('vda'))
        self.assertIsNone(guest.interface_stats('tap1'))
        self.assertIsNone(guest.memory_stats())
        self.assertIsNone(guest.block_io_tune('vda'))
