"""Resize and cold migration through the driver against the fake libvirt
(nova_clear.migration), and the writable disk's growth on a real ext4
image file."""

import os
import subprocess
from unittest import mock
from xml.etree import ElementTree as ET

import fixtures
from oslo_concurrency import processutils
from oslo_utils import units
import testtools

from nova.compute import power_state
from nova.compute import task_states
import nova.conf
from nova import exception
from nova import objects

from nova_clear import capabilities
from nova_clear import exception as clear_exc
from nova_clear import migration
from tests.unit import test_driver

CONF = nova.conf.CONF


def _flavor(vcpus=2, memory_mb=256, root_gb=2, name='bigger'):
    return objects.Flavor(name=name, vcpus=vcpus, memory_mb=memory_mb,
                          root_gb=root_gb, ephemeral_gb=0, swap=0,
                          extra_specs={})


class TestDriverResize(test_driver.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.extend = self.useFixture(fixtures.MockPatch(
            'nova.virt.disk.api.extend')).mock
        self.inst = self.instance()
        self.spawn(self.inst)
        self.drv._files(self.inst).write_image_ref(test_driver.IMG)
        self.d = self.inst_dir(self.inst)
        with open(os.path.join(self.d, 'disk'), 'wb') as f:
            f.write(b'original data')
        self.before = sorted(os.listdir(self.d))
        self.old_flavor = self.inst.flavor

    def _xml(self):
        return ET.fromstring(self.conn.domains[self.inst.uuid].xml)

    def _state(self):
        return self.drv.get_info(self.inst).state

    def _migrate(self, flavor=None, dest=None):
        return self.drv.migrate_disk_and_power_off(
            self.ctx, self.inst, dest or CONF.my_ip, flavor or _flavor(),
            [])

    def _finish(self, flavor=None, resize_instance=True, power_on=True):
        # as the compute manager's _finish_resize: the new flavor is set
        self.inst.old_flavor = self.old_flavor
        self.inst.new_flavor = flavor or _flavor()
        self.inst.flavor = self.inst.new_flavor
        self.drv.finish_migration(self.ctx, mock.sentinel.migration,
                                  self.inst, '[]', [], self.image_meta(),
                                  resize_instance, {}, power_on=power_on)

    def _revert(self, power_on=True):
        # as the compute manager: destroy at the destination, then
        # finish_revert_resize at the source with the old flavor back
        self.inst.task_state = task_states.RESIZE_REVERTING
        self.drv.destroy(self.ctx, self.inst, [], destroy_disks=True)
        self.inst.flavor = self.old_flavor
        self.drv.finish_revert_migration(self.ctx, self.inst, [],
                                         mock.sentinel.migration,
                                         power_on=power_on)

    def _read_disk(self, d=None):
        with open(os.path.join(d or self.d, 'disk'), 'rb') as f:
            return f.read()

    def test_same_host_capability(self):
        self.assertTrue(
            capabilities.CAPABILITIES['supports_migrate_to_same_host'])

    def test_resize_and_confirm(self):
        info = self._migrate()
        self.assertEqual(power_state.SHUTDOWN, self._state())
        saved = self.d + '_resize'
        self.assertEqual(b'original data', self._read_disk(saved))
        self.assertEqual(b'original data', self._read_disk())
        self.assertIn('"path": "%s/disk"' % self.d, info)
        self.assertNotIn('console.log', os.listdir(self.d))

        self._finish()
        self.assertEqual(power_state.RUNNING, self._state())
        self.extend.assert_called_once_with(mock.ANY, 2 * units.Gi)
        self.assertEqual(os.path.join(self.d, 'disk'),
                         self.extend.call_args[0][0].path)
        xml = self._xml()
        self.assertEqual('2', xml.find('vcpu').text)
        self.assertEqual('256', xml.find('memory').text)
        self.assertEqual('bigger', xml.find(
            'metadata/{*}instance/{*}flavor').get('name'))
        self.assertEqual(1, len(self.conn.domains))

        self.drv.confirm_migration(self.ctx, mock.sentinel.migration,
                                   self.inst, [])
        self.assertFalse(os.path.exists(saved))
        self.assertEqual(power_state.RUNNING, self._state())
        self.assertEqual(b'original data', self._read_disk())

    def test_migrate_same_flavor_does_not_grow(self):
        self._migrate(flavor=self.old_flavor)
        self._finish(flavor=self.old_flavor, resize_instance=False)
        self.extend.assert_not_called()
        self.assertEqual(power_state.RUNNING, self._state())

    def test_finish_powered_off_stays_off(self):
        self._migrate()
        self._finish(power_on=False)
        self.assertEqual(power_state.SHUTDOWN, self._state())
        self.assertEqual('2', self._xml().find('vcpu').text)

    def test_revert_returns_the_original_running(self):
        self._migrate()
        self._finish()
        with open(os.path.join(self.d, 'disk'), 'wb') as f:
            f.write(b'written after the resize')
        self._revert()
        self.assertEqual(power_state.RUNNING, self._state())
        self.assertEqual(b'original data', self._read_disk())
        self.assertFalse(os.path.exists(self.d + '_resize'))
        self.assertEqual('1', self._xml().find('vcpu').text)
        self.assertEqual('128', self._xml().find('memory').text)
        self.assertEqual(self.before, sorted(os.listdir(self.d)))

    def test_shrink_refused_before_anything(self):
        e = self.assertRaises(exception.InstanceFaultRollback, self._migrate,
                              _flavor(root_gb=0))
        self.assertIsInstance(e.inner_exception, exception.ResizeError)
        self.assertIn('resize disk down', str(e.inner_exception))
        self.assertEqual(power_state.RUNNING, self._state())
        self.assertFalse(os.path.exists(self.d + '_resize'))
        self.assertEqual(self.before, sorted(os.listdir(self.d)))

    def test_bad_disk_quota_of_new_flavor_refused_before_anything(self):
        flavor = _flavor()
        flavor.extra_specs = {'quota:disk_read_iops_sec': 'lots'}
        e = self.assertRaises(exception.InstanceFaultRollback, self._migrate,
                              flavor)
        self.assertIn('quota', str(e.inner_exception))
        self.assertEqual(power_state.RUNNING, self._state())
        self.assertFalse(os.path.exists(self.d + '_resize'))

    def test_no_space_for_the_copy_refused_before_power_off(self):
        st = os.statvfs(self.d)
        with mock.patch.object(os, 'statvfs', return_value=mock.Mock(
                f_bavail=0, f_frsize=st.f_frsize)):
            e = self.assertRaises(exception.InstanceFaultRollback,
                                  self._migrate)
        self.assertIn('free in', str(e.inner_exception))
        self.assertEqual(power_state.RUNNING, self._state())
        self.assertFalse(os.path.exists(self.d + '_resize'))

    def test_copy_failure_restores_the_running_original(self):
        with mock.patch.object(
                processutils, 'execute',
                side_effect=processutils.ProcessExecutionError(
                    stderr='No space left on device')):
            e = self.assertRaises(exception.InstanceFaultRollback,
                                  self._migrate)
        self.assertIsInstance(e.inner_exception, exception.ResizeError)
        self.assertIn('No space left', str(e.inner_exception))
        self.assertEqual(power_state.RUNNING, self._state())
        self.assertFalse(os.path.exists(self.d + '_resize'))
        self.assertEqual(self.before, sorted(os.listdir(self.d)))
        self.assertEqual(b'original data', self._read_disk())
        self.assertEqual('1', self._xml().find('vcpu').text)

    def test_copy_failure_of_a_stopped_instance_keeps_it_stopped(self):
        self.drv.power_off(self.inst)
        with mock.patch.object(migration, 'move_files',
                               side_effect=OSError(28, 'No space')):
            self.assertRaises(exception.InstanceFaultRollback, self._migrate)
        self.assertEqual(power_state.SHUTDOWN, self._state())
        self.assertEqual(self.before, sorted(os.listdir(self.d)))

    def test_finish_failure_stops_and_delete_removes_all(self):
        self._migrate()
        self.extend.side_effect = processutils.ProcessExecutionError(
            stderr='qemu-img: cannot resize')
        e = self.assertRaises(exception.ResizeError, self._finish)
        self.assertIn('cannot resize', str(e))
        self.assertEqual(power_state.SHUTDOWN, self._state())
        self.assertEqual(1, len(self.conn.domains))
        # Nova: ERROR with that fault; a hard reboot boots <uuid>
        self.inst.flavor = self.old_flavor
        self.drv.reboot(self.ctx, self.inst, [], 'HARD')
        self.assertEqual(power_state.RUNNING, self._state())
        self.assertEqual(b'original data', self._read_disk())
        # and a delete leaves nothing
        self.inst.task_state = task_states.DELETING
        self.drv.destroy(self.ctx, self.inst, [])
        self.assertEqual({}, self.conn.domains)
        self.assertFalse(os.path.exists(self.d))
        self.assertFalse(os.path.exists(self.d + '_resize'))

    def test_finish_start_failure_leaves_it_stopped(self):
        self._migrate()
        real_define = self.drv.host.define

        def define(xml):
            guest = real_define(xml)
            self.conn.domains[self.inst.uuid].fail_start = 'no memory'
            return guest
        with mock.patch.object(self.drv.host, 'define', side_effect=define):
            e = self.assertRaises(exception.ResizeError, self._finish)
        self.assertIn('no memory', str(e))
        self.assertIsInstance(e.__cause__,
                              clear_exc.ClearContainerStartFailed)
        self.assertEqual(power_state.SHUTDOWN, self._state())
        self.assertTrue(os.path.isdir(self.d + '_resize'))
        # the hard reboot Nova allows in ERROR: the old flavor, running
        self.inst.flavor = self.old_flavor
        self.conn.domains[self.inst.uuid].fail_start = None
        self.drv.reboot(self.ctx, self.inst, [], 'HARD')
        self.assertEqual(power_state.RUNNING, self._state())
        self.assertEqual('1', self._xml().find('vcpu').text)

    def test_revert_after_failed_finish(self):
        self._migrate()
        self.extend.side_effect = processutils.ProcessExecutionError()
        self.assertRaises(exception.ResizeError, self._finish)
        self._revert()
        self.assertEqual(power_state.RUNNING, self._state())
        self.assertEqual(self.before, sorted(os.listdir(self.d)))

    def test_delete_while_resized_removes_both_directories(self):
        self._migrate()
        self._finish()
        self.inst.task_state = task_states.DELETING
        self.drv.destroy(self.ctx, self.inst, [])
        self.assertEqual({}, self.conn.domains)
        self.assertEqual([], [n for n in os.listdir(os.path.dirname(self.d))
                              if n.startswith(self.inst.uuid)])

    def test_leftover_resize_dir_is_replaced(self):
        os.makedirs(self.d + '_resize')
        with open(os.path.join(self.d + '_resize', 'disk'), 'wb') as f:
            f.write(b'stale')
        self._migrate()
        self.assertEqual(b'original data', self._read_disk(self.d +
                                                           '_resize'))

    def test_confirm_after_moving_away_undefines_here(self):
        self._migrate()
        self.inst.host = 'otherhost'
        self.drv.confirm_migration(self.ctx, mock.sentinel.migration,
                                   self.inst, [])
        self.assertEqual({}, self.conn.domains)
        self.assertFalse(os.path.exists(self.d + '_resize'))

    def test_image_cache_keeps_what_resize_dirs_use(self):
        self._migrate()
        os.unlink(os.path.join(self.d, 'image'))
        with mock.patch.object(self.drv.image_cache,
                               'remove_unused') as remove:
            self.drv.disks.remove_unused(os.path.dirname(self.d), set(), 0)
        in_use = remove.call_args[0][0]
        self.assertEqual({test_driver.IMG}, in_use())


class TestMoveBetweenHosts(test_driver.DriverTestCase):
    """The move to another host at another IP: nova's remotefs helper
    creates the directory there and copies the files (two hosts on one
    machine: tests/unit/test_migration_hosts.py)."""

    def setUp(self):
        super().setUp()
        self.remotefs = self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.volume.remotefs.RemoteFilesystem')).mock
        self.copy = self.useFixture(fixtures.MockPatch(
            'nova.virt.libvirt.utils.copy_image')).mock
        self.inst = self.instance()
        self.spawn(self.inst)
        self.drv._files(self.inst).write_image_ref(test_driver.IMG)
        self.d = self.inst_dir(self.inst)

    def test_copies_through_remotefs(self):
        self.drv.migrate_disk_and_power_off(self.ctx, self.inst, '192.0.2.7',
                                            _flavor(), [])
        self.remotefs.return_value.create_dir.assert_called_once_with(
            '192.0.2.7', self.d)
        copied = {c[0][1]: c[1] for c in self.copy.call_args_list}
        self.assertEqual({os.path.join(self.d, 'disk'),
                          os.path.join(self.d, 'image')}, set(copied))
        self.assertEqual({'host': '192.0.2.7', 'compression': False},
                         copied[os.path.join(self.d, 'disk')])
        self.assertTrue(os.path.isdir(self.d + '_resize'))
        self.assertFalse(os.path.exists(self.d))

    def test_failed_copy_removes_the_remote_directory(self):
        self.copy.side_effect = processutils.ProcessExecutionError(
            stderr='ssh: connection refused')
        self.assertRaises(exception.InstanceFaultRollback,
                          self.drv.migrate_disk_and_power_off, self.ctx,
                          self.inst, '192.0.2.7', _flavor(), [])
        self.remotefs.return_value.remove_dir.assert_called_once_with(
            '192.0.2.7', self.d)
        self.assertEqual(power_state.RUNNING,
                         self.drv.get_info(self.inst).state)
        self.assertTrue(os.path.exists(os.path.join(self.d, 'disk')))

    def test_unreachable_destination_refused_before_power_off(self):
        self.remotefs.return_value.create_dir.side_effect = \
            processutils.ProcessExecutionError(stderr='no route')
        self.assertRaises(exception.InstanceFaultRollback,
                          self.drv.migrate_disk_and_power_off, self.ctx,
                          self.inst, '192.0.2.7', _flavor(), [])
        self.assertEqual(power_state.RUNNING,
                         self.drv.get_info(self.inst).state)


class TestGrowWritableDisk(testtools.TestCase):
    """The container's writable disk and its ext4 grow, unprivileged."""

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        tree = os.path.join(self.tmp, 'tree')
        os.makedirs(os.path.join(tree, 'upper', 'root'))
        with open(os.path.join(tree, 'upper', 'root', 'mark'), 'w') as f:
            f.write('before the resize\n')
        self.image = os.path.join(self.tmp, 'upper')
        with open(self.image, 'wb') as f:
            f.truncate(64 * units.Mi)
        subprocess.run(['mkfs.ext4', '-q', '-F', '-L', 'clear-upper', '-d',
                        tree, self.image], check=True)

    def _blocks(self):
        out = subprocess.run(['dumpe2fs', '-h', self.image],
                             capture_output=True, text=True,
                             check=True).stdout
        fields = dict(line.split(':', 1) for line in out.splitlines()
                      if ':' in line)
        return int(fields['Block count']) * int(fields['Block size'])

    def test_grows_file_and_filesystem_keeping_files(self):
        self.assertLessEqual(self._blocks(), 64 * units.Mi)
        self.assertEqual((64 * units.Mi, units.Gi),
                         migration.grow_writable_disk(self.image, 1))
        self.assertEqual(units.Gi, os.path.getsize(self.image))
        self.assertEqual(units.Gi, self._blocks())
        out = subprocess.run(['debugfs', '-R', 'cat /upper/root/mark',
                              self.image], capture_output=True, text=True,
                             check=True).stdout
        self.assertEqual('before the resize\n', out)

    def test_never_shrinks(self):
        migration.grow_writable_disk(self.image, 1)
        self.assertEqual((units.Gi, units.Gi),
                         migration.grow_writable_disk(self.image, 0))

    def test_not_ext4_is_a_resize_error(self):
        with open(self.image, 'wb') as f:
            f.truncate(8 * units.Mi)
        e = self.assertRaises(exception.ResizeError,
                              migration.grow_writable_disk, self.image, 1)
        self.assertIn('e2fsck', str(e))
        self.assertEqual(8 * units.Mi, os.path.getsize(self.image))
