"""ClearDriver with a fake libvirt connection (no daemons)."""

import os
from unittest import mock

import fixtures
from oslo_concurrency import processutils
from oslo_config import fixture as config_fixture
import testtools

import libvirt
from nova.compute import power_state
from nova.compute import provider_tree
import nova.conf
from nova import context as nova_context
from nova import exception
from nova import objects
from nova.virt import driver as nova_driver
from nova.virt import event as virtevent
from nova.virt import fake as fake_virt

from nova_clear import driver as clear_driver
from nova_clear import exception as clear_exc
from nova_clear.guest import assets
from nova_clear import host as clear_host
from nova_clear.images import disk as disk_images
from tests.unit import fake_libvirt

CONF = nova.conf.CONF
objects.register_all()
IMG = '5a1ec0de-0000-4000-8000-000000000001'


class TestLifecycleEvents(testtools.TestCase):

    def test_lifecycle_events(self):
        t = clear_host.lifecycle_transition
        self.assertEqual(virtevent.EVENT_LIFECYCLE_STARTED,
                         t(libvirt.VIR_DOMAIN_EVENT_STARTED, 0))
        self.assertEqual(virtevent.EVENT_LIFECYCLE_STOPPED,
                         t(libvirt.VIR_DOMAIN_EVENT_STOPPED,
                           libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED))
        self.assertEqual(virtevent.EVENT_LIFECYCLE_SUSPENDED,
                         t(libvirt.VIR_DOMAIN_EVENT_STOPPED,
                           libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED))
        self.assertEqual(virtevent.EVENT_LIFECYCLE_PAUSED,
                         t(libvirt.VIR_DOMAIN_EVENT_SUSPENDED, 0))
        self.assertIsNone(t(libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
                            libvirt.VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED))
        self.assertIsNone(t(libvirt.VIR_DOMAIN_EVENT_DEFINED, 0))


class TestEventFiltering(testtools.TestCase):

    def _host(self, owner):
        got = []
        h = clear_host.Host('test:///default', got.append, owner=owner)
        return h, got

    def _dom(self, host):
        conn = fake_libvirt.FakeConnection()
        xml = ('<domain><name>d</name><uuid>%s</uuid><metadata>'
               '<n:instance xmlns:n="%s"><n:host name="%s"/></n:instance>'
               '</metadata></domain>' % (IMG, 'https://opendev.org/x/'
                                         'nova-clear/instance/1.0', host))
        return conn.defineXML(xml)

    def _deliver(self, h, dom):
        h._on_lifecycle(None, dom, libvirt.VIR_DOMAIN_EVENT_STARTED, 0, None)
        item = h._events.get_nowait()
        if not h._foreign(item[0]):
            h._lifecycle_callback(item[1])

    def test_own_events_forwarded_others_dropped(self):
        h, got = self._host('me')
        self._deliver(h, self._dom('me'))
        self._deliver(h, self._dom('someone-else'))
        self.assertEqual([IMG], [e.get_instance_uuid() for e in got])
        self.assertEqual(virtevent.EVENT_LIFECYCLE_STARTED,
                         got[0].get_transition())


class DriverTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.conf = self.useFixture(config_fixture.Config(CONF))
        asset_dir = os.path.join(self.tmp, 'assets')
        os.makedirs(asset_dir)
        for name in ('vmlinuz', 'initrd.img'):
            with open(os.path.join(asset_dir, name), 'wb') as f:
                f.write(name.encode())
        assets.write_manifest(asset_dir, 'vmlinuz', 'initrd.img', 'test',
                              acpi=True, virtio_mmio_cmdline=False)
        self.conf.config(group='clear', assets_path=asset_dir,
                         virt_type='qemu', soft_reboot_timeout=0,
                         instances_path=os.path.join(self.tmp, 'inst'),
                         memory_overhead_mb=50)
        self.conf.config(host='fakehost', reserved_host_memory_mb=512,
                         reserved_host_disk_mb=0, reserved_host_cpus=0)
        self.useFixture(fixtures.MockPatch(
            'nova.virt.node.get_local_node_uuid', return_value='node-uuid'))
        self.conn = fake_libvirt.FakeConnection()
        self.useFixture(fixtures.MockPatchObject(
            clear_host.Host, 'get_connection', return_value=self.conn))
        self.useFixture(fixtures.MockPatchObject(
            clear_host.Host, 'initialize'))
        self.cached = disk_images.CachedImage(
            IMG, os.path.join(self.tmp, 'base'), 'raw', 1 << 20)
        self.useFixture(fixtures.MockPatchObject(
            disk_images.ImageCache, 'get', return_value=self.cached))

        def overlay(cached, dest, root_gb):
            with open(dest, 'wb') as f:
                f.write(b'qcow2')
        self.useFixture(fixtures.MockPatch(
            'nova_clear.images.disk.create_overlay', side_effect=overlay))
        self.drv = clear_driver.ClearDriver(fake_virt.FakeVirtAPI())
        self.drv.init_host('fakehost')
        self.ctx = nova_context.RequestContext('u', 'p', is_admin=True)

    def instance(self, n=1):
        flavor = objects.Flavor(name='t', vcpus=1, memory_mb=128, root_gb=1,
                                ephemeral_gb=0, swap=0, extra_specs={})
        return objects.Instance(
            id=n, uuid='00000000-0000-0000-0000-%012d' % n,
            hostname='h%d' % n, display_name='h%d' % n, project_id='p',
            user_id='u', image_ref=IMG, flavor=flavor,
            system_metadata={}, config_drive='', launched_at=None)

    def image_meta(self):
        return objects.ImageMeta.from_dict({'id': IMG,
                                            'disk_format': 'raw'})

    def spawn(self, inst, **kw):
        self.drv.spawn(self.ctx, inst, self.image_meta(), [], None, {}, **kw)

    def inst_dir(self, inst):
        return os.path.join(self.tmp, 'inst', inst.uuid)


class TestDriver(DriverTestCase):

    def test_capabilities_are_explicit(self):
        self.assertEqual(set(nova_driver.ComputeDriver.capabilities),
                         set(self.drv.capabilities))

    def test_spawn_defines_starts_and_records_xml(self):
        inst = self.instance()
        self.spawn(inst)
        self.assertEqual(power_state.RUNNING,
                         self.drv.get_info(inst).state)
        with open(os.path.join(self.inst_dir(inst), 'domain.xml')) as f:
            self.assertIn("machine=\"microvm\"", f.read())
        self.assertEqual([inst.name], self.drv.list_instances())
        self.assertEqual([inst.uuid], self.drv.list_instance_uuids())
        self.assertRaises(exception.InstanceExists, self.spawn, inst)

    def test_foreign_domains_are_not_listed(self):
        self.conn.defineXML('<domain><name>other</name>'
                            '<uuid>99999999-0000-0000-0000-000000000000'
                            '</uuid></domain>')
        self.assertEqual([], self.drv.list_instances())

    def test_other_hosts_domains_are_not_listed(self):
        inst = self.instance()
        self.spawn(inst)
        # another nova-compute sharing this libvirtd
        self.conf.config(host='otherhost')
        self.assertEqual([], self.drv.list_instance_uuids())
        self.conf.config(host='fakehost')
        self.assertEqual([inst.uuid], self.drv.list_instance_uuids())

    def test_vanishing_domain_is_skipped(self):
        inst = self.instance()
        self.spawn(inst)
        dom = self.conn.domains[inst.uuid]

        def gone():
            raise fake_libvirt._error(libvirt.VIR_ERR_NO_DOMAIN, 'gone')
        dom.info = gone
        res = self.drv.get_available_resource('fakehost')
        self.assertEqual(0, res['vcpus_used'])
        self.assertEqual('[]', res['pci_passthrough_devices'])

    def test_spawn_failure_leaves_nothing(self):
        self.conn.fail_start = 'qemu exploded'
        inst = self.instance()
        err = self.assertRaises(clear_exc.ClearContainerStartFailed,
                                self.spawn, inst)
        self.assertIn('qemu exploded', str(err))
        self.assertEqual({}, self.conn.domains)
        self.assertFalse(os.path.exists(self.inst_dir(inst)))

    def test_spawn_image_failure_leaves_nothing(self):
        disk_images.ImageCache.get.side_effect = \
            exception.ImageUnacceptable(image_id=IMG, reason='bad')
        inst = self.instance()
        self.assertRaises(exception.ImageUnacceptable, self.spawn, inst)
        self.assertEqual({}, self.conn.domains)
        self.assertFalse(os.path.exists(self.inst_dir(inst)))

    def test_spawn_refuses_volumes(self):
        inst = self.instance()
        self.assertRaises(
            exception.InstanceDeployFailure, self.spawn, inst,
            block_device_info={'block_device_mapping': [{'x': 1}]})
        self.assertFalse(os.path.exists(self.inst_dir(inst)))

    def test_spawn_powered_off(self):
        inst = self.instance()
        self.spawn(inst, power_on=False)
        self.assertEqual(power_state.SHUTDOWN,
                         self.drv.get_info(inst).state)

    def test_destroy(self):
        inst = self.instance()
        self.spawn(inst)
        self.drv.destroy(self.ctx, inst, None)
        self.assertEqual({}, self.conn.domains)
        self.assertFalse(os.path.exists(self.inst_dir(inst)))
        self.assertRaises(exception.InstanceNotFound, self.drv.get_info, inst)
        self.drv.destroy(self.ctx, inst, None)  # twice is fine

    def test_destroy_keeping_disks(self):
        inst = self.instance()
        self.spawn(inst)
        self.drv.destroy(self.ctx, inst, None, destroy_disks=False)
        self.assertEqual({}, self.conn.domains)
        self.assertTrue(os.path.exists(os.path.join(self.inst_dir(inst),
                                                    'disk')))

    def test_power_off_graceful_and_forced(self):
        inst = self.instance()
        self.spawn(inst)
        self.drv.power_off(inst, timeout=5, retry_interval=1)
        self.assertEqual(power_state.SHUTDOWN, self.drv.get_info(inst).state)
        self.drv.power_on(self.ctx, inst, None)
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)
        self.conn.guest_honours_acpi = False
        self.drv.power_off(inst, timeout=0.5, retry_interval=0.2)
        self.assertEqual(power_state.SHUTDOWN, self.drv.get_info(inst).state)

    def test_soft_reboot_falls_back_to_hard(self):
        inst = self.instance()
        self.spawn(inst)
        self.conn.guest_honours_acpi = False
        self.drv.reboot(self.ctx, inst, None, 'SOFT')
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)

    def _refuse_shutdown(self, inst):
        def refuse():
            raise fake_libvirt._error(libvirt.VIR_ERR_OPERATION_UNSUPPORTED,
                                      'no ACPI')
        self.conn.domains[inst.uuid].shutdown = refuse

    def test_refused_shutdown_request(self):
        inst = self.instance()
        self.spawn(inst)
        self._refuse_shutdown(inst)
        logs = self.useFixture(fixtures.FakeLogger())
        self.drv.reboot(self.ctx, inst, None, 'SOFT')
        self.assertIn('Soft reboot: shutdown request failed: libvirt could '
                      'not shut down Clear Container %s: no ACPI' % inst.name,
                      logs.output)
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)
        self._refuse_shutdown(inst)  # the hard reboot redefined it
        self.drv.power_off(inst, timeout=5, retry_interval=1)
        self.assertEqual(power_state.SHUTDOWN, self.drv.get_info(inst).state)

    def test_spawn_failure_survives_a_failing_undefine(self):
        self.conn.fail_start = 'qemu exploded'
        real_define = self.conn.defineXML

        def busy(flags):
            raise fake_libvirt._error(libvirt.VIR_ERR_INTERNAL_ERROR, 'busy')

        def define(xml):
            dom = real_define(xml)
            dom.undefineFlags = busy
            return dom
        self.conn.defineXML = define
        logs = self.useFixture(fixtures.FakeLogger())
        inst = self.instance()
        self.assertRaises(clear_exc.ClearContainerStartFailed, self.spawn,
                          inst)
        self.assertIn('Could not remove domain: libvirt could not undefine '
                      'Clear Container %s: busy' % inst.name, logs.output)

    def test_pause_suspend(self):
        inst = self.instance()
        self.spawn(inst)
        self.drv.pause(inst)
        self.assertEqual(power_state.PAUSED, self.drv.get_info(inst).state)
        self.drv.unpause(inst)
        self.drv.suspend(self.ctx, inst)
        self.assertEqual(power_state.SUSPENDED,
                         self.drv.get_info(inst).state)
        self.drv.resume(self.ctx, inst, None)
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)
        # A hard reboot of a suspended instance boots afresh.
        self.drv.suspend(self.ctx, inst)
        self.drv.reboot(self.ctx, inst, None, 'HARD')
        self.assertFalse(self.conn.domains[inst.uuid].saved)
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)

    def test_config_drive_when_required(self):
        self.conf.config(force_config_drive=True)
        inst = self.instance()

        def make_drive(self_, path):
            with open(path, 'wb') as f:
                f.write(b'iso')
        with mock.patch('nova.api.metadata.base.InstanceMetadata') as md, \
                mock.patch('nova.virt.configdrive.ConfigDriveBuilder.'
                           'make_drive', make_drive):
            self.spawn(inst, network_info=None)
        md.assert_called_once()
        self.assertTrue(inst.config_drive)
        xml = self.conn.domains[inst.uuid].xml
        self.assertIn('nova_clear.configdrive=/dev/vdb', xml)
        self.assertIn(os.path.join(self.inst_dir(inst), 'disk.config'), xml)

    def test_config_drive_failure_leaves_nothing(self):
        self.conf.config(force_config_drive=True)
        inst = self.instance()
        with mock.patch('nova.api.metadata.base.InstanceMetadata'), \
                mock.patch('nova.virt.configdrive.ConfigDriveBuilder.'
                           'make_drive', side_effect=processutils.
                           ProcessExecutionError('genisoimage: no')):
            err = self.assertRaises(exception.InstanceDeployFailure,
                                    self.spawn, inst)
        self.assertIn('config drive', str(err))
        self.assertFalse(os.path.exists(self.inst_dir(inst)))

    def test_missing_kernel_fails_spawn(self):
        os.unlink(os.path.join(self.tmp, 'assets', 'vmlinuz'))
        inst = self.instance()
        self.assertRaises(clear_exc.GuestAssetsInvalid, self.spawn, inst)
        self.assertFalse(os.path.exists(self.inst_dir(inst)))

    def test_console_output(self):
        inst = self.instance()
        self.assertRaises(exception.ConsoleNotAvailable,
                          self.drv.get_console_output, self.ctx, inst)
        self.spawn(inst)
        with mock.patch('nova.privsep.path.last_bytes',
                        return_value=(b'tail', 10)) as last:
            with open(os.path.join(self.inst_dir(inst), 'console.log'),
                      'w'):
                pass
            self.assertEqual(b'tail',
                             self.drv.get_console_output(self.ctx, inst))
            last.assert_called_once_with(
                os.path.join(self.inst_dir(inst), 'console.log'),
                CONF['clear'].console_log_max_bytes)


class TestImageCacheManagement(DriverTestCase):

    def _old(self, path, data=b'x'):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)
        os.utime(path, (1, 1))

    def test_unused_images_and_rootfs_removed(self):
        cache = self.drv.image_cache.path
        used, unused = IMG, '5a1ec0de-0000-4000-8000-0000000000ff'
        for image_id in (used, unused):
            self._old(os.path.join(cache, image_id))
            self._old(os.path.join(cache, image_id + '.json'), b'{}')
        rootfs = self.drv.rootfs_cache.path
        kept = os.path.join(rootfs, 'a' * 64 + '.ext4')
        gone = os.path.join(rootfs, 'b' * 64 + '.ext4')
        for p in (kept, gone):
            self._old(p)
        self._old(os.path.join(rootfs, 'by-image', unused),
                  b'b' * 64)
        inst = self.instance()
        files = self.drv._files(inst)
        files.create()
        files.write_rootfs_ref(kept)
        self.drv.manage_image_cache(self.ctx, [inst])
        self.assertEqual([used], self.drv.image_cache.cached_ids())
        self.assertTrue(os.path.exists(kept))
        self.assertFalse(os.path.exists(gone))
        self.assertEqual([], os.listdir(os.path.join(rootfs, 'by-image')))

    def test_young_entries_kept(self):
        self.conf.config(remove_unused_original_minimum_age_seconds=3600,
                         group='image_cache')
        cache = self.drv.image_cache.path
        os.makedirs(cache, exist_ok=True)
        for name in ('young', 'young.json'):
            with open(os.path.join(cache, name), 'w') as f:
                f.write('{}')
        self.drv.manage_image_cache(self.ctx, [])
        self.assertEqual(['young'], self.drv.image_cache.cached_ids())


class TestInventory(DriverTestCase):

    def test_provider_tree(self):
        tree = provider_tree.ProviderTree()
        tree.new_root('fakehost', 'rp')
        self.drv.update_provider_tree(tree, 'fakehost')
        inv = tree.data('fakehost').inventory
        self.assertEqual(4, inv['VCPU']['total'])
        self.assertEqual(8192, inv['MEMORY_MB']['total'])
        self.assertEqual(512, inv['MEMORY_MB']['reserved'])
        self.assertIn('DISK_GB', inv)
        self.assertEqual(CONF.initial_cpu_allocation_ratio,
                         inv['VCPU']['allocation_ratio'])
        traits = tree.data('fakehost').traits
        self.assertIn('CUSTOM_CLEAR_CONTAINERS', traits)
        self.assertIn('COMPUTE_IMAGE_TYPE_RAW', traits)
        self.assertNotIn('COMPUTE_IMAGE_TYPE_ISO', traits)
        # Two running instances reserve their QEMU overhead.
        self.spawn(self.instance(1))
        self.spawn(self.instance(2))
        self.drv.update_provider_tree(tree, 'fakehost')
        self.assertEqual(512 + 2 * 50,
                         tree.data('fakehost').inventory['MEMORY_MB']
                         ['reserved'])

    def test_available_resource(self):
        self.spawn(self.instance(1))
        res = self.drv.get_available_resource('fakehost')
        self.assertEqual(4, res['vcpus'])
        self.assertEqual(1, res['vcpus_used'])
        self.assertEqual(128 + 50, res['memory_mb_used'])
        self.assertEqual('QEMU', res['hypervisor_type'])
        self.assertEqual([('x86_64', 'qemu', 'hvm')],
                         res['supported_instances'])
        self.assertEqual(['fakehost'], self.drv.get_available_nodes())


class TestVirtTypeChoice(DriverTestCase):

    def test_auto_falls_back_when_probe_fails(self):
        self.conf.config(group='clear', virt_type='auto')
        with mock.patch('os.path.exists', return_value=True), \
                mock.patch.object(clear_host.Host, 'probe_boot',
                                  return_value=False) as probe:
            self.assertEqual('qemu', self.drv._choose_virt_type(
                assets.AssetStore(CONF['clear'].assets_path).load()))
            probe.assert_called_once()
        with mock.patch('os.path.exists', return_value=True), \
                mock.patch.object(clear_host.Host, 'probe_boot',
                                  return_value=True):
            self.assertEqual('kvm', self.drv._choose_virt_type(None))

    def test_explicit_type_skips_probe(self):
        self.conf.config(group='clear', virt_type='kvm')
        with mock.patch.object(clear_host.Host, 'probe_boot') as probe:
            self.assertEqual('kvm', self.drv._choose_virt_type(None))
            probe.assert_not_called()


class TestProbeLog(testtools.TestCase):
    """virtlogd writes the probe's log as root (0600): an unprivileged
    nova-compute reads it through nova's privsep daemon (it could not, and
    every KVM probe "failed": TCG on KVM hosts)."""

    def test_unreadable_log_read_through_privsep(self):
        with mock.patch('builtins.open',
                        side_effect=PermissionError(13, 'denied')), \
                mock.patch('nova.privsep.path.last_bytes',
                           return_value=(b'x\nnova-clear: probe ok\n', 0)
                           ) as last:
            self.assertTrue(clear_host._file_contains(
                '/i/probe.log', b'nova-clear: probe ok'))
        last.assert_called_once_with('/i/probe.log',
                                     clear_host.PROBE_LOG_MAX_BYTES)

    def test_missing_log(self):
        with mock.patch('nova.privsep.path.last_bytes') as last:
            self.assertFalse(clear_host._file_contains(
                '/nonexistent/probe.log', b'nova-clear: probe ok'))
        last.assert_not_called()
