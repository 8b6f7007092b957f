"""Cold migration, resize and evacuate between two compute hosts against
the fake libvirt: two drivers, each with its own connection, instances
path and image cache, in the order Nova's compute manager calls them
(nova_clear.migration, nova_clear.migration_hosts)."""

import contextlib
import os
from unittest import mock

import fixtures

from nova.compute import power_state
from nova.compute import task_states
import nova.conf
from nova import exception
from nova.virt import fake as fake_virt

from nova_clear import capabilities
from nova_clear import driver as clear_driver
from nova_clear.images import container
from nova_clear import migration
from nova_clear import migration_hosts
from tests.unit import fake_libvirt
from tests.unit import test_driver
from tests.unit.test_migration import _flavor
from tests.unit.test_network import make_vif

CONF = nova.conf.CONF
H1, H2 = 'fakehost', 'otherhost'


class TwoHostsTestCase(test_driver.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatch('nova_clear.vif.check_host'))
        self.paths = {H1: (os.path.join(self.tmp, 'inst'),
                           os.path.join(self.tmp, 'inst', '_clear_base')),
                      H2: (os.path.join(self.tmp, 'inst2'),
                           os.path.join(self.tmp, 'cache2'))}
        self.conns = {H1: self.conn, H2: fake_libvirt.FakeConnection()}
        self.drvs = {H1: self.drv}
        with self.on(H2):
            drv2 = clear_driver.ClearDriver(fake_virt.FakeVirtAPI())
            drv2.host.get_connection = lambda: self.conns[H2]
            drv2.init_host(H2)
        self.drvs[H2] = drv2
        self.unplug = self.useFixture(fixtures.MockPatch(
            'nova_clear.vif_plug.unplug')).mock
        self.rebase = self.useFixture(fixtures.MockPatch(
            'nova_clear.migration_hosts.processutils')).mock.execute
        self.extend = self.useFixture(fixtures.MockPatch(
            'nova.virt.disk.api.extend')).mock
        self.img_info = self.useFixture(fixtures.MockPatch(
            'nova.virt.images.qemu_img_info')).mock
        self.img_info.return_value.backing_file = os.path.join(
            self.paths[H1][1], test_driver.IMG)

    def _config(self, host):
        inst, cache = self.paths[host]
        self.conf.config(host=host, my_ip='192.0.2.1')
        self.conf.config(group='clear', instances_path=inst,
                         image_cache_path=cache)

    @contextlib.contextmanager
    def on(self, host):
        """CONF as ``host``'s nova-compute has it (then host 1's)."""
        self._config(host)
        try:
            yield self.drvs.get(host)
        finally:
            self._config(H1)

    def dir(self, host, inst, suffix=''):
        return os.path.join(self.paths[host][0], inst.uuid + suffix)

    def state(self, host, inst):
        with self.on(host) as drv:
            return drv.get_info(inst).state

    def spawn_h1(self, nwinfo=()):
        inst = self.instance()
        inst.host = H1
        with self.on(H1):
            self.spawn(inst, network_info=list(nwinfo))
            self.drv._files(inst).write_image_ref(test_driver.IMG)
        with open(os.path.join(self.dir(H1, inst), 'disk'), 'wb') as f:
            f.write(b'written before')
        return inst

    def migrate(self, inst, flavor, resize=True):
        """resize_instance at the source, finish_resize at the
        destination (the same IP: two hosts on one machine)."""
        self.old_flavor = inst.flavor
        inst.task_state = task_states.RESIZE_MIGRATING
        with self.on(H1) as drv:
            info = drv.migrate_disk_and_power_off(
                self.ctx, inst, CONF.my_ip, flavor, [])
        inst.host = H2
        inst.old_flavor, inst.new_flavor, inst.flavor = (
            self.old_flavor, flavor, flavor)
        inst.task_state = task_states.RESIZE_FINISH
        with self.on(H2) as drv:
            drv.finish_migration(self.ctx, mock.sentinel.migration, inst,
                                 info, [], self.image_meta(), resize, {})
        inst.task_state = None
        return info

    def revert(self, inst):
        inst.task_state = task_states.RESIZE_REVERTING
        with self.on(H2) as drv:
            drv.destroy(self.ctx, inst, [], destroy_disks=True)
        inst.host = H1
        inst.flavor = self.old_flavor
        with self.on(H1) as drv:
            drv.finish_revert_migration(self.ctx, inst, [],
                                        mock.sentinel.migration)
        inst.task_state = None


class TestColdMigrationBetweenHosts(TwoHostsTestCase):

    def test_disk_info_names_the_source(self):
        inst = self.spawn_h1()
        src = migration_hosts.source_of(self.migrate(inst, inst.flavor,
                                                     False))
        self.assertEqual({'host': H1, 'ip': '192.0.2.1',
                          'dir': self.dir(H1, inst)}, src)

    def test_migrate_and_confirm(self):
        inst = self.spawn_h1()
        self.migrate(inst, inst.flavor, resize=False)
        # the files are in host 2's instances path, the original kept
        with open(os.path.join(self.dir(H2, inst), 'disk'), 'rb') as f:
            self.assertEqual(b'written before', f.read())
        self.assertEqual(power_state.RUNNING, self.state(H2, inst))
        self.assertEqual(power_state.SHUTDOWN, self.state(H1, inst))
        self.assertFalse(os.path.exists(self.dir(H1, inst)))
        self.assertTrue(os.path.isdir(self.dir(H1, inst, '_resize')))
        # the overlay rebased on host 2's cached base, not host 1's
        self.rebase.assert_called_once_with(
            'qemu-img', 'rebase', '-u', '-f', 'qcow2', '-b',
            self.cached.path, '-F', 'raw',
            os.path.join(self.dir(H2, inst), 'disk'))
        with self.on(H2) as drv:
            self.assertIn(self.dir(H2, inst),
                          drv.host.lookup(inst.uuid).get_xml_desc())
        with self.on(H1) as drv:
            drv.confirm_migration(self.ctx, mock.sentinel.migration, inst,
                                  [])
        self.assertEqual({}, self.conns[H1].domains)
        self.assertEqual([], [n for n in os.listdir(self.paths[H1][0])
                              if n.startswith(inst.uuid)])
        self.assertEqual(power_state.RUNNING, self.state(H2, inst))

    def test_resize_then_revert_back_on_the_source(self):
        inst = self.spawn_h1()
        self.migrate(inst, _flavor(vcpus=2, memory_mb=256, root_gb=2))
        with self.on(H2) as drv:
            self.assertIn('<vcpu placement="static">2</vcpu>',
                          drv.host.lookup(inst.uuid).get_xml_desc())
        self.assertEqual(os.path.join(self.dir(H2, inst), 'disk'),
                         self.extend.call_args[0][0].path)
        self.revert(inst)
        self.assertEqual({}, self.conns[H2].domains)
        self.assertFalse(os.path.exists(self.dir(H2, inst)))
        self.assertEqual(power_state.RUNNING, self.state(H1, inst))
        self.assertFalse(os.path.exists(self.dir(H1, inst, '_resize')))
        with open(os.path.join(self.dir(H1, inst), 'disk'), 'rb') as f:
            self.assertEqual(b'written before', f.read())
        with self.on(H1) as drv:
            self.assertIn('<vcpu placement="static">1</vcpu>',
                          drv.host.lookup(inst.uuid).get_xml_desc())

    def _as_container(self, inst):
        d = self.dir(H1, inst)
        os.unlink(os.path.join(d, 'disk'))
        with open(os.path.join(d, 'upper'), 'wb') as f:
            f.write(b'writable')
        with open(os.path.join(d, 'rootfs'), 'w') as f:
            f.write(os.path.join(self.paths[H1][1], 'rootfs', 'abc.ext4'))
        rootfs2 = os.path.join(self.paths[H2][1], 'rootfs', 'abc.ext4')
        os.makedirs(os.path.dirname(rootfs2))
        open(rootfs2, 'w').close()
        return rootfs2

    def test_container_root_filesystem_from_the_destination_cache(self):
        inst = self.spawn_h1()
        rootfs2 = self._as_container(inst)
        with mock.patch.object(self.drvs[H2].rootfs_cache, 'get') as get:
            get.side_effect = lambda cached, limit, claim: claim(
                container.Rootfs('abc', rootfs2, 1, {}))
            self.migrate(inst, inst.flavor, resize=False)
        get.assert_called_once_with(self.cached, None, claim=mock.ANY)
        with open(os.path.join(self.dir(H2, inst), 'rootfs')) as f:
            self.assertEqual(rootfs2, f.read())
        with self.on(H2) as drv:
            self.assertIn(rootfs2, drv.host.lookup(inst.uuid).get_xml_desc())
        self.rebase.assert_not_called()

    def test_container_other_digest_is_a_resize_error_left_stopped(self):
        inst = self.spawn_h1()
        rootfs2 = self._as_container(inst)
        with mock.patch.object(self.drvs[H2].rootfs_cache, 'get') as get:
            get.side_effect = lambda cached, limit, claim: claim(
                container.Rootfs('other', rootfs2, 1, {}))
            e = self.assertRaises(exception.ResizeError, self.migrate, inst,
                                  inst.flavor, False)
        self.assertIn('unpacks to other', str(e))
        if inst.uuid in self.conns[H2].domains:
            self.assertNotEqual(power_state.RUNNING, self.state(H2, inst))
        # the original is still whole on host 1 (a revert brings it back)
        self.assertTrue(os.path.isdir(self.dir(H1, inst, '_resize')))

    def test_moved_files_missing_is_a_resize_error(self):
        inst = self.spawn_h1()
        info = migration_hosts.disk_info(
            self.drv, self.drv._files(inst), [])
        with self.on(H2) as drv:
            e = self.assertRaises(
                exception.ResizeError, drv.finish_migration, self.ctx,
                mock.sentinel.migration, inst,
                info.replace(inst.uuid, 'gone'), [], self.image_meta(),
                False, {})
        self.assertIn('neither in', str(e))

    def test_leftover_at_the_destination_is_replaced(self):
        inst = self.spawn_h1()
        os.makedirs(self.dir(H2, inst))
        with open(os.path.join(self.dir(H2, inst), 'disk'), 'wb') as f:
            f.write(b'stale')
        self.migrate(inst, inst.flavor, resize=False)
        with open(os.path.join(self.dir(H2, inst), 'disk'), 'rb') as f:
            self.assertEqual(b'written before', f.read())

    def test_this_machine_or_not(self):
        for dest in (None, '', H1, '192.0.2.1', '127.0.0.1', '127.0.0.2',
                     '::1'):
            self.assertTrue(migration.is_local(self.drv, dest), dest)
        for dest in ('192.0.2.7', '2001:db8::7', 'otherhost'):
            self.assertFalse(migration.is_local(self.drv, dest), dest)

    def test_pushed_to_another_path_is_moved_in(self):
        # a remote push lands in the source's instances path on this
        # host; this host's instances path differs
        inst = self.spawn_h1()
        pushed = os.path.join(self.tmp, 'pushed', inst.uuid)
        os.makedirs(pushed)
        with open(os.path.join(pushed, 'disk'), 'wb') as f:
            f.write(b'pushed')
        info = ('{"disks": [], "source": {"host": "%s", "ip": "192.0.2.9", '
                '"dir": "%s"}}' % (H1, pushed))
        inst.host = H2
        with self.on(H2) as drv:
            drv.finish_migration(self.ctx, mock.sentinel.migration, inst,
                                 info, [], self.image_meta(), False, {})
        self.assertFalse(os.path.exists(pushed))
        with open(os.path.join(self.dir(H2, inst), 'disk'), 'rb') as f:
            self.assertEqual(b'pushed', f.read())
        self.assertEqual(power_state.RUNNING, self.state(H2, inst))

    def test_legacy_list_disk_info_is_same_host(self):
        self.assertIsNone(migration_hosts.source_of('[]'))
        self.assertIsNone(migration_hosts.source_of(None))
        self.assertIsNone(migration_hosts.source_of('not json'))


class TestEvacuate(TwoHostsTestCase):
    """Nova's rebuild on host 2 with host 1 down, then host 1's
    nova-compute restarting (_destroy_evacuated_instances)."""

    def test_declared(self):
        self.assertTrue(capabilities.CAPABILITIES['supports_evacuate'])
        self.assertTrue(self.drv.capabilities['supports_evacuate'])

    def test_rebuild_defers_to_nova_for_evacuate(self):
        inst = self.instance()
        self.assertRaises(NotImplementedError, self.drv.rebuild, self.ctx,
                          inst, self.image_meta(), [], None, {}, [], None,
                          None, evacuate=True, preserve_ephemeral=True)

    def test_evacuate_then_source_cleanup(self):
        nwinfo = [make_vif(active=True)]
        inst = self.spawn_h1(nwinfo)
        # host 1 down: Nova's _rebuild_default_impl(evacuate=True) on host
        # 2 detaches volumes and spawns; nothing is called on host 1
        inst.host = H2
        inst.task_state = task_states.REBUILD_SPAWNING
        get = self.drvs[H2].image_cache.get
        get.reset_mock()
        with self.on(H2) as drv:
            self.assertRaises(NotImplementedError, drv.rebuild, self.ctx,
                              inst, self.image_meta(), [], None, {}, [],
                              None, None, network_info=nwinfo,
                              evacuate=True)
            drv.spawn(self.ctx, inst, self.image_meta(), [], None, {},
                      network_info=nwinfo)
        inst.task_state = None
        # disks anew from Glance through host 2's cache, not copied
        get.assert_called_once_with(self.ctx, mock.ANY, claim=mock.ANY)
        with open(os.path.join(self.dir(H2, inst), 'disk'), 'rb') as f:
            self.assertEqual(b'qcow2', f.read())
        self.assertEqual(power_state.RUNNING, self.state(H2, inst))
        # host 1 comes back: Nova lists its domains, finds the evacuated
        # one and destroys it with its disks (not shared storage)
        with self.on(H1) as drv:
            self.assertEqual([inst.uuid], drv.list_instance_uuids())
            drv.destroy(self.ctx, inst, nwinfo, {}, True)
            self.assertEqual([], drv.list_instance_uuids())
        self.assertEqual({}, self.conns[H1].domains)
        self.assertFalse(os.path.exists(self.dir(H1, inst)))
        self.unplug.assert_called_with(inst, nwinfo)
        # host 2's instance untouched
        self.assertEqual(power_state.RUNNING, self.state(H2, inst))
        self.assertTrue(os.path.exists(os.path.join(self.dir(H2, inst),
                                                    'disk')))

    def test_source_cleanup_of_a_stopped_domain_after_a_host_reboot(self):
        inst = self.spawn_h1()
        self.conns[H1].domains[inst.uuid].destroy()
        with self.on(H1) as drv:
            drv.destroy(self.ctx, inst, [], {}, True)
        self.assertEqual({}, self.conns[H1].domains)
        self.assertFalse(os.path.exists(self.dir(H1, inst)))
