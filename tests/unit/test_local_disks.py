"""Ephemeral and swap disks (nova_clear.local_disks): which disks an
instance gets (flavor vs block device mappings), the files made with the
real mkfs.ext4 and mkswap, where the domain attaches them (microvm, q35,
the config drive's device on the command line), and their life through
spawn, reboot, rebuild (preserve_ephemeral), resize and destroy."""

import errno
import os
import shutil
import subprocess
from unittest import mock
from xml.etree import ElementTree as ET

import fixtures
from oslo_concurrency import processutils
from oslo_config import fixture as config_fixture
from oslo_utils import units
import testtools

from nova.compute import power_state
from nova.compute import task_states
import nova.conf
from nova import exception
from nova import objects

from nova_clear import exception as clear_exc
from nova_clear import local_disks
from nova_clear import storage
from tests.unit import test_domain
from tests.unit import test_driver

CONF = nova.conf.CONF
objects.register_all()
HAVE_MKFS = bool(shutil.which('mkfs.ext4') and shutil.which('mkswap'))


def _mark(path, end=units.Gi, data=b'data!'):
    """``data`` written at the end of the ``end``-byte disk ``path``."""
    with open(path, 'r+b') as f:
        f.seek(end - len(data))
        f.write(data)


def _flavor(ephemeral_gb=0, swap=0, root_gb=1, name='t'):
    return objects.Flavor(name=name, vcpus=1, memory_mb=128, root_gb=root_gb,
                          ephemeral_gb=ephemeral_gb, swap=swap,
                          extra_specs={})


def _bdi(ephemerals=(), swap=None):
    return {'root_device_name': '/dev/vda', 'image': [],
            'ephemerals': [dict(e) for e in ephemerals],
            'swap': swap, 'block_device_mapping': []}


def _eph(size, guest_format=None, device_name='/dev/vdb'):
    return {'device_name': device_name, 'size': size,
            'guest_format': guest_format, 'disk_bus': None,
            'device_type': 'disk'}


def _fs(path):
    """(filesystem type, label) as blkid reads them."""
    out = subprocess.run(['blkid', '-p', '-o', 'export', path],
                         capture_output=True, text=True).stdout
    fields = dict(line.split('=', 1) for line in out.splitlines()
                  if '=' in line)
    return fields.get('TYPE'), fields.get('LABEL')


def _ext_bytes(path):
    out = subprocess.run(['dumpe2fs', '-h', path], capture_output=True,
                         text=True, check=True).stdout
    fields = dict(line.split(':', 1) for line in out.splitlines()
                  if ':' in line)
    return int(fields['Block count']) * int(fields['Block size'])


class TestWanted(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.conf = self.useFixture(config_fixture.Config(CONF))

    def inst(self, **kw):
        return objects.Instance(flavor=_flavor(**kw))

    def test_nothing(self):
        self.assertEqual([], local_disks.wanted(self.inst(), None))
        self.assertEqual([], local_disks.wanted(self.inst(), _bdi()))

    def test_from_the_flavor(self):
        disks = local_disks.wanted(self.inst(ephemeral_gb=2, swap=64), None)
        self.assertEqual(
            [local_disks.LocalDisk('disk.eph0', 2 * units.Gi, 'ext4',
                                   'ephemeral0'),
             local_disks.LocalDisk('disk.swap', 64 * units.Mi, 'swap')],
            disks)

    def test_mappings_win_over_the_flavor(self):
        bdi = _bdi([_eph(1), _eph(2, 'ext2', '/dev/vdc')],
                   {'device_name': '/dev/vdd', 'swap_size': 32})
        disks = local_disks.wanted(self.inst(ephemeral_gb=3, swap=64), bdi)
        self.assertEqual(
            [('disk.eph0', units.Gi, 'ext4', 'ephemeral0'),
             ('disk.eph1', 2 * units.Gi, 'ext2', 'ephemeral1'),
             ('disk.swap', 32 * units.Mi, 'swap', None)],
            [(d.name, d.size, d.fs, d.label) for d in disks])

    def test_unusable_swap_mapping_falls_back_to_the_flavor(self):
        # nova.virt.driver.swap_is_usable: a device name and a size
        bdi = _bdi(swap={'device_name': None, 'swap_size': 32})
        disks = local_disks.wanted(self.inst(swap=16), bdi)
        self.assertEqual([('disk.swap', 16 * units.Mi)],
                         [(d.name, d.size) for d in disks])

    def test_default_ephemeral_format(self):
        self.conf.config(default_ephemeral_format='ext3')
        disks = local_disks.wanted(self.inst(),
                                   _bdi([_eph(1), _eph(1, 'ext2')]))
        self.assertEqual(['ext3', 'ext2'], [d.fs for d in disks])
        disks = local_disks.wanted(self.inst(ephemeral_gb=1), None)
        self.assertEqual(['ext3'], [d.fs for d in disks])

    def test_unknown_guest_format_refused(self):
        e = self.assertRaises(exception.InvalidBDMFormat, local_disks.wanted,
                              self.inst(), _bdi([_eph(1, 'ntfs')]))
        self.assertIn('ntfs format is not supported', str(e))

    def test_resize_grows_a_single_ephemeral_to_the_new_flavor(self):
        inst = self.inst(ephemeral_gb=4, swap=128)   # the new flavor
        bdi = _bdi([_eph(1)], {'device_name': '/dev/vdc', 'swap_size': 32})
        disks = local_disks.wanted(inst, bdi, resize=True)
        self.assertEqual([('disk.eph0', 4 * units.Gi),
                          ('disk.swap', 128 * units.Mi)],
                         [(d.name, d.size) for d in disks])
        # several mappings keep their sizes
        bdi = _bdi([_eph(1), _eph(1)])
        self.assertEqual([units.Gi, units.Gi, 128 * units.Mi],
                         [d.size for d in local_disks.wanted(
                             inst, bdi, resize=True)])

    def test_current_ephemeral_gb(self):
        self.assertEqual(3, local_disks.current_ephemeral_gb(
            self.inst(ephemeral_gb=3), None))
        self.assertEqual(2, local_disks.current_ephemeral_gb(
            self.inst(ephemeral_gb=3), _bdi([_eph(1), _eph(1)])))


@testtools.skipUnless(HAVE_MKFS, 'needs mkfs.ext4 and mkswap')
class TestCreate(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.conf = self.useFixture(config_fixture.Config(CONF))

    def test_ephemeral_is_a_sparse_labelled_ext4(self):
        path = os.path.join(self.tmp, 'disk.eph0')
        disk = local_disks.LocalDisk('disk.eph0', units.Gi, 'ext4',
                                     'ephemeral0')
        local_disks.create(disk, path)
        st = os.stat(path)
        self.assertEqual(units.Gi, st.st_size)
        self.assertLess(st.st_blocks * 512, 100 * units.Mi)   # sparse
        self.assertEqual(('ext4', 'ephemeral0'), _fs(path))
        self.assertEqual(units.Gi, _ext_bytes(path))
        self.assertEqual(['disk.eph0'], os.listdir(self.tmp))

    def test_swap(self):
        path = os.path.join(self.tmp, 'disk.swap')
        local_disks.create(local_disks.LocalDisk(
            'disk.swap', 32 * units.Mi, 'swap'), path)
        self.assertEqual(32 * units.Mi, os.path.getsize(path))
        self.assertEqual('swap', _fs(path)[0])

    def test_preallocated_when_asked(self):
        self.conf.config(preallocate_images='space')
        path = os.path.join(self.tmp, 'disk.swap')
        local_disks.create(local_disks.LocalDisk(
            'disk.swap', 16 * units.Mi, 'swap'), path)
        self.assertGreaterEqual(os.stat(path).st_blocks * 512,
                                16 * units.Mi)

    def test_failed_mkfs_names_the_disk_and_leaves_nothing(self):
        path = os.path.join(self.tmp, 'disk.eph0')
        disk = local_disks.LocalDisk('disk.eph0', units.Gi, 'nosuchfs',
                                     'ephemeral0')
        e = self.assertRaises(clear_exc.LocalDiskFailed, local_disks.create,
                              disk, path)
        self.assertIn('ephemeral disk disk.eph0 (1 GiB nosuchfs)', str(e))
        self.assertIsInstance(e, exception.InstanceDeployFailure)
        self.assertEqual([], os.listdir(self.tmp))

    def test_full_filesystem(self):
        self.conf.config(preallocate_images='space')
        path = os.path.join(self.tmp, 'disk.eph0')
        disk = local_disks.LocalDisk('disk.eph0', units.Gi, 'ext4',
                                     'ephemeral0')
        with mock.patch.object(os, 'posix_fallocate', side_effect=OSError(
                errno.ENOSPC, 'No space left on device')):
            e = self.assertRaises(clear_exc.LocalDiskFailed,
                                  local_disks.create, disk, path)
        self.assertIn('no space left', str(e))
        self.assertEqual([], os.listdir(self.tmp))
        # mkfs finding the filesystem full
        with mock.patch.object(
                processutils, 'execute',
                side_effect=processutils.ProcessExecutionError(
                    stderr='mkfs.ext4: No space left on device while '
                           'writing out and closing file system')):
            e = self.assertRaises(clear_exc.LocalDiskFailed,
                                  local_disks.create, disk, path)
        self.assertIn('no space left on the instances filesystem', str(e))
        self.assertEqual([], os.listdir(self.tmp))

    def test_grow_keeps_the_filesystem(self):
        path = os.path.join(self.tmp, 'disk.eph0')
        small = local_disks.LocalDisk('disk.eph0', 64 * units.Mi, 'ext4',
                                      'ephemeral0')
        local_disks.create(small, path)
        files = storage.InstanceFiles(os.path.dirname(self.tmp),
                                      os.path.basename(self.tmp))
        big = local_disks.LocalDisk('disk.eph0', 128 * units.Mi, 'ext4',
                                    'ephemeral0')
        inst = objects.Instance(flavor=_flavor())
        self.assertEqual([], local_disks.ensure(inst, [big], files,
                                                grow=True))
        self.assertEqual(128 * units.Mi, os.path.getsize(path))
        self.assertEqual(128 * units.Mi, _ext_bytes(path))
        self.assertEqual(('ext4', 'ephemeral0'), _fs(path))
        # without grow (spawn, reboot): left as it is
        bigger = local_disks.LocalDisk('disk.eph0', 256 * units.Mi, 'ext4',
                                       'ephemeral0')
        local_disks.ensure(inst, [bigger], files)
        self.assertEqual(128 * units.Mi, os.path.getsize(path))


class TestDomainXML(testtools.TestCase):

    def _devs(self, root):
        return [(d.find('target').get('dev'), d.find('source').get('file'),
                 d.find('readonly') is not None)
                for d in root.findall('devices/disk')]

    def _cmdline_configdrive(self, root):
        args = root.findtext('os/cmdline').split()
        return [a for a in args if a.startswith('nova_clear.configdrive=')]

    def test_disk_image_order_and_config_drive_device(self):
        for machine in ('microvm', 'q35'):
            root = test_domain._xml(
                machine_type=machine, config_drive_path='/i/disk.config',
                local_disks=(('/i/disk.eph0', 'raw'), ('/i/disk.eph1', 'raw'),
                             ('/i/disk.swap', 'raw')))
            self.assertEqual(
                [('vda', '/i/disk', False), ('vdb', '/i/disk.eph0', False),
                 ('vdc', '/i/disk.eph1', False),
                 ('vdd', '/i/disk.swap', False),
                 ('vde', '/i/disk.config', True)], self._devs(root), machine)
            self.assertEqual(['nova_clear.configdrive=/dev/vde'],
                             self._cmdline_configdrive(root))
            for d in root.findall('devices/disk')[1:4]:
                self.assertEqual('raw', d.find('driver').get('type'))
                self.assertEqual('unmap', d.find('driver').get('discard'))
                self.assertEqual('virtio', d.find('target').get('bus'))

    def test_container_order_and_config_drive_device(self):
        root = test_domain._xml(
            disk_path='/c/rootfs', upper_disk_path='/i/upper',
            config_drive_path='/i/disk.config',
            local_disks=(('/i/disk.eph0', 'raw'),))
        self.assertEqual(
            [('vda', '/c/rootfs', True), ('vdb', '/i/upper', False),
             ('vdc', '/i/disk.eph0', False), ('vdd', '/i/disk.config', True)],
            self._devs(root))
        self.assertEqual(['nova_clear.configdrive=/dev/vdd'],
                         self._cmdline_configdrive(root))
        self.assertIn('nova_clear.mode=container',
                      root.findtext('os/cmdline'))

    def test_no_local_disks_unchanged(self):
        root = test_domain._xml(config_drive_path='/i/disk.config')
        self.assertEqual(['nova_clear.configdrive=/dev/vdb'],
                         self._cmdline_configdrive(root))
        root = test_domain._xml(upper_disk_path='/i/upper',
                                config_drive_path='/i/disk.config')
        self.assertEqual(['nova_clear.configdrive=/dev/vdc'],
                         self._cmdline_configdrive(root))

    def test_io_limits_apply_to_them(self):
        tune = (('total_iops_sec', 100),)
        local = (('/i/disk.eph0', 'raw'), ('/i/disk.swap', 'raw'))
        root = test_domain._xml(machine_type='q35', iotune=tune,
                                config_drive_path='/i/disk.config',
                                local_disks=local)
        limited = [d.find('target').get('dev')
                   for d in root.findall('devices/disk')
                   if d.find('iotune') is not None]
        self.assertEqual(['vda', 'vdb', 'vdc'], limited)
        root = test_domain._xml(iotune=tune, local_disks=local,
                                config_drive_path='/i/disk.config')
        meta = root.find('metadata/{*}instance/{*}iotune')
        self.assertEqual('vda vdb vdc', meta.get('disks'))

    def test_q35_root_port_per_disk(self):
        root = test_domain._xml(machine_type='q35', pcie_ports=2,
                                local_disks=(('/i/disk.eph0', 'raw'),
                                             ('/i/disk.swap', 'raw')))
        ports = [c for c in root.findall('devices/controller')
                 if c.get('model') == 'pcie-root-port']
        # 3 disks + rng, 2 spare
        self.assertEqual(4 + 2, len(ports))


@testtools.skipUnless(HAVE_MKFS, 'needs mkfs.ext4 and mkswap')
class TestDriverLocalDisks(test_driver.DriverTestCase):

    def inst_with(self, ephemeral_gb=1, swap=32, n=1):
        inst = self.instance(n)
        inst.flavor = _flavor(ephemeral_gb, swap)
        return inst

    def path(self, inst, name):
        return os.path.join(self.inst_dir(inst), name)

    def disks(self, inst):
        root = ET.fromstring(self.conn.domains[inst.uuid].xml)
        return [(d.find('target').get('dev'),
                 os.path.basename(d.find('source').get('file')))
                for d in root.findall('devices/disk')]

    def test_spawn_attaches_them_and_destroy_removes_them(self):
        inst = self.inst_with()
        inst.config_drive = 'True'
        self.useFixture(fixtures.MockPatch(
            'nova_clear.instance_disks.instance_metadata.InstanceMetadata'))

        def make_drive(self_, path):
            with open(path, 'wb') as f:
                f.write(b'iso')
        self.useFixture(fixtures.MockPatch(
            'nova.virt.configdrive.ConfigDriveBuilder.make_drive',
            make_drive))
        self.spawn(inst)
        self.assertEqual([('vda', 'disk'), ('vdb', 'disk.eph0'),
                          ('vdc', 'disk.swap'), ('vdd', 'disk.config')],
                         self.disks(inst))
        self.assertIn('nova_clear.configdrive=/dev/vdd',
                      self.conn.domains[inst.uuid].xml)
        self.assertEqual(('ext4', 'ephemeral0'),
                         _fs(self.path(inst, 'disk.eph0')))
        self.assertEqual(units.Gi,
                         os.path.getsize(self.path(inst, 'disk.eph0')))
        self.assertEqual(32 * units.Mi,
                         os.path.getsize(self.path(inst, 'disk.swap')))
        self.drv.destroy(self.ctx, inst, None)
        self.assertFalse(os.path.exists(self.inst_dir(inst)))
        self.assertEqual({}, self.conn.domains)

    def test_block_device_mappings(self):
        inst = self.inst_with(ephemeral_gb=2, swap=64)
        self.spawn(inst, block_device_info=_bdi(
            [_eph(1, 'ext2'), _eph(1, device_name='/dev/vdc')],
            {'device_name': '/dev/vdd', 'swap_size': 16}))
        self.assertEqual([('vda', 'disk'), ('vdb', 'disk.eph0'),
                          ('vdc', 'disk.eph1'), ('vdd', 'disk.swap')],
                         self.disks(inst))
        self.assertEqual(('ext2', 'ephemeral0'),
                         _fs(self.path(inst, 'disk.eph0')))
        self.assertEqual(('ext4', 'ephemeral1'),
                         _fs(self.path(inst, 'disk.eph1')))
        self.assertEqual(16 * units.Mi,
                         os.path.getsize(self.path(inst, 'disk.swap')))

    def test_unsupported_format_refused_before_anything(self):
        inst = self.inst_with()
        self.assertRaises(exception.InvalidBDMFormat, self.spawn, inst,
                          block_device_info=_bdi([_eph(1, 'btrfs')]))
        self.assertFalse(os.path.exists(self.inst_dir(inst)))

    def test_failed_mkfs_fails_the_spawn_leaving_nothing(self):
        self.conf.config(default_ephemeral_format='nosuchfs')
        inst = self.inst_with()
        e = self.assertRaises(exception.InstanceDeployFailure, self.spawn,
                              inst)
        self.assertIn('ephemeral disk disk.eph0', str(e))
        self.assertFalse(os.path.exists(self.inst_dir(inst)))
        self.assertEqual({}, self.conn.domains)

    def test_kept_across_reboot_and_power(self):
        inst = self.inst_with()
        self.spawn(inst)
        eph = self.path(inst, 'disk.eph0')
        _mark(eph)
        ino = os.stat(eph).st_ino
        self.drv.reboot(self.ctx, inst, None, 'HARD')
        self.drv.power_off(inst)
        self.drv.power_on(self.ctx, inst, None)
        self.drv.suspend(self.ctx, inst)
        self.drv.resume(self.ctx, inst, None)
        self.assertEqual(ino, os.stat(eph).st_ino)
        with open(eph, 'rb') as f:
            f.seek(units.Gi - 5)
            self.assertEqual(b'data!', f.read())
        self.assertEqual([('vda', 'disk'), ('vdb', 'disk.eph0'),
                          ('vdc', 'disk.swap')], self.disks(inst))

    def test_rebuild_without_preserve_is_novas_default(self):
        inst = self.inst_with()
        self.assertRaises(NotImplementedError, self.drv.rebuild, self.ctx,
                          inst, self.image_meta(), [], None, {}, [],
                          None, None, preserve_ephemeral=False)

    def _rebuild_preserving(self, inst):
        inst.task_state = task_states.REBUILDING
        saved = []
        detach = mock.Mock()
        attach = mock.Mock(return_value=None)
        with mock.patch.object(objects.Instance, 'save',
                               lambda i, expected_task_state=None:
                               saved.append((expected_task_state,
                                             i.task_state))):
            self.drv.rebuild(self.ctx, inst, self.image_meta(), [], None, {},
                             ['bdms'], detach, attach, network_info=[],
                             preserve_ephemeral=True)
        detach.assert_called_once_with(self.ctx, ['bdms'],
                                       detach_root_bdm=True)
        attach.assert_called_once_with(self.ctx, inst, ['bdms'])
        self.assertEqual(
            [([task_states.REBUILDING],
              task_states.REBUILD_BLOCK_DEVICE_MAPPING),
             ([task_states.REBUILD_BLOCK_DEVICE_MAPPING],
              task_states.REBUILD_SPAWNING)], saved)

    def test_rebuild_preserving_ephemeral(self):
        inst = self.inst_with()
        self.spawn(inst)
        eph, swap, disk = (self.path(inst, n)
                           for n in ('disk.eph0', 'disk.swap', 'disk'))
        _mark(eph)
        with open(disk, 'wb') as f:
            f.write(b'old root')
        _mark(swap, 32 * units.Mi, b'swap!')
        ino = os.stat(eph).st_ino
        self._rebuild_preserving(inst)
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)
        self.assertEqual(ino, os.stat(eph).st_ino)
        with open(eph, 'rb') as f:
            f.seek(units.Gi - 5)
            self.assertEqual(b'data!', f.read())
        with open(swap, 'rb') as f:   # made afresh
            f.seek(32 * units.Mi - 5)
            self.assertEqual(b'\0' * 5, f.read())
        self.assertEqual('swap', _fs(swap)[0])
        with open(disk, 'rb') as f:
            self.assertEqual(b'qcow2', f.read())   # the new root disk
        self.assertEqual([('vda', 'disk'), ('vdb', 'disk.eph0'),
                          ('vdc', 'disk.swap')], self.disks(inst))

    def test_default_rebuild_recreates_them_empty(self):
        inst = self.inst_with()
        self.spawn(inst)
        eph = self.path(inst, 'disk.eph0')
        _mark(eph)
        # nova's _rebuild_default_impl
        self.drv.power_off(inst)
        self.drv.destroy(self.ctx, inst, None)
        self.spawn(inst)
        with open(eph, 'rb') as f:
            f.seek(units.Gi - 5)
            self.assertEqual(b'\0' * 5, f.read())
        self.assertEqual(('ext4', 'ephemeral0'), _fs(eph))

    def test_rescue_leaves_them_out_and_unrescue_brings_them_back(self):
        inst = self.inst_with()
        self.spawn(inst)
        self.drv.rescue(self.ctx, inst, [], self.image_meta(), None, None)
        self.assertEqual([('vda', 'disk'), ('vdb', 'disk')],
                         self.disks(inst))
        self.drv.unrescue(self.ctx, inst)
        self.assertEqual([('vda', 'disk'), ('vdb', 'disk.eph0'),
                          ('vdc', 'disk.swap')], self.disks(inst))


@testtools.skipUnless(HAVE_MKFS, 'needs mkfs.ext4 and mkswap')
class TestResize(test_driver.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MockPatch('nova.virt.disk.api.extend'))
        self.inst = self.instance()
        self.old_flavor = _flavor(ephemeral_gb=1, swap=32)
        self.inst.flavor = self.old_flavor
        self.spawn(self.inst)
        self.d = self.inst_dir(self.inst)
        self.eph = os.path.join(self.d, 'disk.eph0')
        _mark(self.eph)

    def _migrate(self, flavor):
        return self.drv.migrate_disk_and_power_off(
            self.ctx, self.inst, CONF.my_ip, flavor, [])

    def _finish(self, flavor):
        self.inst.old_flavor = self.old_flavor
        self.inst.new_flavor = flavor
        self.inst.flavor = flavor
        self.drv.finish_migration(self.ctx, mock.sentinel.migration,
                                  self.inst, '[]', [], self.image_meta(),
                                  True, {})

    def _tail(self, path):
        with open(path, 'rb') as f:
            f.seek(units.Gi - 5)
            return f.read(5)

    def test_grow_then_revert(self):
        new = _flavor(ephemeral_gb=2, swap=64, root_gb=2, name='big')
        info = self._migrate(new)
        self.assertIn('disk.eph0', info)
        self.assertNotIn('disk.swap', os.listdir(self.d))   # made afresh
        self._finish(new)
        self.assertEqual(power_state.RUNNING,
                         self.drv.get_info(self.inst).state)
        self.assertEqual(2 * units.Gi, os.path.getsize(self.eph))
        self.assertEqual(2 * units.Gi, _ext_bytes(self.eph))
        self.assertEqual(b'data!', self._tail(self.eph))
        self.assertEqual(64 * units.Mi, os.path.getsize(
            os.path.join(self.d, 'disk.swap')))
        root = ET.fromstring(self.conn.domains[self.inst.uuid].xml)
        self.assertEqual(['disk', 'disk.eph0', 'disk.swap'],
                         [os.path.basename(d.find('source').get('file'))
                          for d in root.findall('devices/disk')])
        # revert: Nova destroys the new one, the old ones come back
        self.inst.task_state = task_states.RESIZE_REVERTING
        self.drv.destroy(self.ctx, self.inst, [], destroy_disks=True)
        self.inst.flavor = self.old_flavor
        self.drv.finish_revert_migration(self.ctx, self.inst, [],
                                         mock.sentinel.migration)
        self.assertEqual(units.Gi, os.path.getsize(self.eph))
        self.assertEqual(units.Gi, _ext_bytes(self.eph))
        self.assertEqual(32 * units.Mi, os.path.getsize(
            os.path.join(self.d, 'disk.swap')))
        self.assertFalse(os.path.exists(self.d + '_resize'))

    def test_confirm_removes_the_old_ones(self):
        new = _flavor(ephemeral_gb=1, swap=0, root_gb=2, name='big')
        self._migrate(new)
        self._finish(new)
        self.assertNotIn('disk.swap', os.listdir(self.d))
        self.drv.confirm_migration(self.ctx, mock.sentinel.migration,
                                   self.inst, [])
        self.assertFalse(os.path.exists(self.d + '_resize'))
        self.assertEqual(b'data!', self._tail(self.eph))

    def test_shrink_refused_before_anything(self):
        before = sorted(os.listdir(self.d))
        e = self.assertRaises(exception.InstanceFaultRollback, self._migrate,
                              _flavor(ephemeral_gb=0, swap=32, root_gb=2))
        self.assertIsInstance(e.inner_exception, exception.ResizeError)
        self.assertIn('resize disk down (ephemeral', str(e.inner_exception))
        self.assertEqual(power_state.RUNNING,
                         self.drv.get_info(self.inst).state)
        self.assertEqual(before, sorted(os.listdir(self.d)))
        self.assertFalse(os.path.exists(self.d + '_resize'))

    def test_shrink_of_mappings_refused(self):
        bdi = _bdi([_eph(1), _eph(1)])
        e = self.assertRaises(
            exception.InstanceFaultRollback,
            self.drv.migrate_disk_and_power_off, self.ctx, self.inst,
            CONF.my_ip, _flavor(ephemeral_gb=1, root_gb=2), [], bdi)
        self.assertIn('2 GB -> 1 GB', str(e.inner_exception))

    def test_new_ephemeral_created_by_the_resize(self):
        self.drv.destroy(self.ctx, self.inst, None)
        self.inst = self.instance(2)
        self.old_flavor = self.inst.flavor   # no ephemeral, no swap
        self.spawn(self.inst)
        self.d = self.inst_dir(self.inst)
        new = _flavor(ephemeral_gb=1, swap=16, root_gb=2, name='big')
        self._migrate(new)
        self._finish(new)
        self.assertEqual(('ext4', 'ephemeral0'),
                         _fs(os.path.join(self.d, 'disk.eph0')))
        self.assertEqual(16 * units.Mi, os.path.getsize(
            os.path.join(self.d, 'disk.swap')))
