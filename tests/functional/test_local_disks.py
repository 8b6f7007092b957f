"""Ephemeral and swap disks on the real libvirtd + QEMU (TCG): the guest
sees them after its own disks, formatted (ext4 labelled ephemeral0, swap),
the config drive still where the command line says; destroy removes
them."""

import os
import re


from nova import exception

from tests.functional import base
from tests.functional import images

# What the workload prints: the disks the kernel found (/proc/partitions:
# KiB, name), the first ephemeral disk's label (ext4's volume name, at
# byte 120 of the superblock; this busybox has no blkid), whether it
# mounts as ext4 and the swap disk goes on.  No quotes: on a disk image
# it is the kernel's command line that splits it.
REPORT = (
    '{b} cat /proc/partitions; echo label=$({b} dd if={eph} bs=1 '
    'skip=1144 count=16 2>/dev/null); {b} mkdir -p /tmp/eph && '
    '{b} mount -t ext4 {eph} /tmp/eph && echo mounted {eph} && '
    '{b} umount /tmp/eph; {b} swapon {swap} && {b} cat /proc/swaps; '
    'echo report-done')


def _report(eph, swap):
    return REPORT.format(b='/bin/busybox', eph=eph, swap=swap)


def _disks(text):
    """{name: KiB} of the guest's /proc/partitions."""
    return {m.group(2): int(m.group(1)) for m in re.finditer(
        r'^\s*\d+\s+\d+\s+(\d+)\s+(vd[a-z]+)\s*$', text, re.M)}


def _instances_path():
    return base.CONF['clear'].instances_path


class TestLocalDisks(base.FunctionalTestCase):

    def _files(self, inst):
        return sorted(os.listdir(os.path.join(_instances_path(),
                                              inst.uuid)))

    def test_disk_image_with_flavor_ephemeral_and_swap(self):
        drv = self.make_driver()
        image = self.glance.add(
            images.disk_image('fs'), 'raw',
            properties={'os_command_line': 'init=/bin/sh -- -c "%s"' %
                        _report('/dev/vdb', '/dev/vdc')})
        inst = self.make_instance(image)
        inst.flavor.ephemeral_gb = 1
        inst.flavor.swap = 32
        drv.spawn(self.context, inst, self.glance.image_meta(image), [],
                  None, {})
        self.addCleanup(self._destroy_quietly, drv, inst)
        self.assertIn('disk.eph0', self._files(inst))
        self.assertIn('disk.swap', self._files(inst))
        text = self.wait_console(drv, inst, 'report-done')
        disks = _disks(text)
        self.assertEqual(1024 * 1024, disks.get('vdb'), text)
        self.assertEqual(32 * 1024, disks.get('vdc'), text)
        self.assertNotIn('vdd', disks)
        self.assertIn('label=ephemeral0', text)
        self.assertIn('mounted /dev/vdb', text)
        self.assertRegex(text, r'(?m)^/dev/vdc\s+partition')
        drv.destroy(self.context, inst, None)
        self.assert_gone(drv, inst)

    def test_q35_container_with_mappings_and_config_drive(self):
        self.config_drive_without_services()
        drv = self.make_driver()
        # container: vda image, vdb writable disk, vdc vdd ephemerals,
        # vde swap, vdf config drive
        image = self.container_image(
            _report('/dev/vdc', '/dev/vde') +
            '; cat /.nova-clear/config-drive/openstack/latest/'
            'meta_data.json; echo',
            hw_machine_type='q35')
        inst = self.make_instance(image)
        inst.flavor.ephemeral_gb = 2
        inst.flavor.swap = 64
        bdi = {'root_device_name': '/dev/vda', 'image': [],
               'ephemerals': [
                   {'device_name': '/dev/vdb', 'size': 1,
                    'guest_format': None},
                   {'device_name': '/dev/vdc', 'size': 1,
                    'guest_format': 'ext2'}],
               'swap': {'device_name': '/dev/vdd', 'swap_size': 16},
               'block_device_mapping': []}
        drv.spawn(self.context, inst, self.glance.image_meta(image), [],
                  None, {}, block_device_info=bdi)
        self.addCleanup(self._destroy_quietly, drv, inst)
        text = self.wait_console(drv, inst, 'workload exited status=0')
        disks = _disks(text)
        self.assertEqual(
            {'vdc': 1024 * 1024, 'vdd': 1024 * 1024, 'vde': 16 * 1024},
            {k: v for k, v in disks.items() if k in ('vdc', 'vdd', 'vde')},
            text)
        self.assertIn('vdf', disks)   # the config drive, last
        self.assertIn('label=ephemeral0', text)
        self.assertIn('mounted /dev/vdc', text)
        self.assertRegex(text, r'(?m)^/dev/vde\s+partition')
        self.assertIn('"uuid": "%s"' % inst.uuid, text)
        with open(os.path.join(_instances_path(), inst.uuid,
                               'domain.xml')) as f:
            self.assertIn('nova_clear.configdrive=/dev/vdf', f.read())
        drv.destroy(self.context, inst, None)
        self.assert_gone(drv, inst)

    def test_failed_mkfs_fails_the_spawn_leaving_nothing(self):
        self.conf.config(default_ephemeral_format='nosuchfs')
        drv = self.make_driver()
        image = self.glance.add(images.disk_image('fs'), 'raw')
        inst = self.make_instance(image)
        inst.flavor.ephemeral_gb = 1
        e = self.assertRaises(exception.InstanceDeployFailure, drv.spawn,
                              self.context, inst,
                              self.glance.image_meta(image), [], None, {})
        self.assertIn('ephemeral disk disk.eph0 (1 GiB nosuchfs)', str(e))
        self.assert_gone(drv, inst)

    def test_rebuild_preserving_ephemeral_keeps_its_data(self):
        # the guest prints the first bytes of the ephemeral disk's last
        # sector, where the host writes a mark while it runs
        from unittest import mock

        from nova.compute import task_states
        from nova import objects
        drv = self.make_driver()
        cmd = ('echo mark=$(/bin/busybox dd if=/dev/vdb bs=512 '
               'skip=2097151 count=1 2>/dev/null | /bin/busybox head -c 5);'
               ' echo report-done; exec /bin/busybox sleep 1000')
        image = self.glance.add(
            images.disk_image('fs'), 'raw',
            properties={'os_command_line': 'init=/bin/sh -- -c "%s"' % cmd})
        inst = self.make_instance(image)
        inst.flavor.ephemeral_gb = 1
        meta = self.glance.image_meta(image)
        drv.spawn(self.context, inst, meta, [], None, {})
        self.addCleanup(self._destroy_quietly, drv, inst)
        self.assertRegex(self.wait_console(drv, inst, 'report-done'),
                         r'mark=\r?\n')
        eph = os.path.join(_instances_path(), inst.uuid, 'disk.eph0')
        with open(eph, 'r+b') as f:
            f.seek(1024 ** 3 - 512)
            f.write(b'data!')
        inst.task_state = task_states.REBUILDING
        with mock.patch.object(objects.Instance, 'save'):
            drv.rebuild(self.context, inst, meta, [], None, {}, [],
                        mock.Mock(), mock.Mock(return_value=None),
                        network_info=[], preserve_ephemeral=True)
        text = self.wait_console(drv, inst, 'report-done')
        self.assertIn('mark=data!', text)
        drv.destroy(self.context, inst, None)
        self.assert_gone(drv, inst)
