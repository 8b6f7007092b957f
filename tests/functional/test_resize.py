"""Resize on one host (allow_resize_to_same_host) on real libvirtd + QEMU:
the calls Nova's compute manager makes, in its order, with its flavor
changes (nova_clear.migration)."""

import json
import os
import re
import subprocess
import time
from unittest import mock
from xml.etree import ElementTree as ET

from oslo_utils import units
from testtools import content

from nova.compute import power_state
from nova.compute import task_states
import nova.conf
from nova import exception
from nova import objects

from tests.functional import base
from tests.functional import images

CONF = nova.conf.CONF

# A container that counts its boots, keeps a mark from its first boot and
# a note from any boot with 2 CPUs (the resized one), and says what it
# sees: its CPUs, memory and the size of its root (the overlay: the
# writable disk's filesystem).
REPORTING_CMD = (
    'b=busybox; $b mkdir -p /root; '
    'n=$(cat /root/boots 2>/dev/null || echo 0); '
    'n=$((n + 1)); echo $n > /root/boots; '
    '[ $n = 1 ] && echo from-first-boot > /root/mark; '
    'cpus=$($b grep -c ^processor /proc/cpuinfo); '
    '[ $cpus = 2 ] && echo from-resized-boot > /root/note; $b sync; '
    'set -- $($b grep MemTotal /proc/meminfo); mem=$2; '
    'set -- $($b df -k / | $b tail -n 1); root=$2; '
    'echo "report boot=$n mark=$(cat /root/mark) '
    'note=$(cat /root/note 2>/dev/null) '
    'cpus=$cpus mem=$mem rootkb=$root end"; '
    'exec sleep 3600')
REPORT = re.compile(r'report boot=(\d+) mark=(\S*) note=(\S*) cpus=(\d+) '
                    r'mem=(\d+) rootkb=(\d+) end')


def _flavor(name, vcpus, memory_mb, root_gb):
    return objects.Flavor(name=name, vcpus=vcpus, memory_mb=memory_mb,
                          root_gb=root_gb, ephemeral_gb=0, swap=0,
                          extra_specs={})


class TestResize(base.FunctionalTestCase):

    def console(self, drv, instance):
        return super().console(drv, instance).replace('\r', '')

    def setUp(self):
        super().setUp()
        self.drv = self.make_driver()
        self.conf.config(allow_resize_to_same_host=True)

    def _domain(self, inst):
        return ET.fromstring(self.drv.host.lookup(inst.uuid).get_xml_desc())

    def _assert_flavor(self, inst, vcpus, memory_mb):
        xml = self._domain(inst)
        self.assertEqual(str(vcpus), xml.find('vcpu').text)
        self.assertEqual(memory_mb * 1024, int(xml.find('memory').text))

    def _resize(self, inst, new, shutdown_timeout=30):
        """The compute manager's resize_instance at the source, then
        finish_resize at the destination (both this host); the seconds
        each took."""
        old = inst.flavor
        t0 = time.monotonic()
        inst.task_state = task_states.RESIZE_MIGRATING
        disk_info = self.drv.migrate_disk_and_power_off(
            self.context, inst, CONF.my_ip, new, [], None,
            shutdown_timeout, 5)
        t1 = time.monotonic()
        inst.old_flavor, inst.new_flavor, inst.flavor = old, new, new
        inst.task_state = task_states.RESIZE_FINISH
        self.drv.finish_migration(
            self.context, mock.sentinel.migration, inst, disk_info, [],
            self.glance.image_meta(inst.image_ref),
            old.root_gb != new.root_gb, {}, None, power_on=True)
        inst.task_state = None
        return t1 - t0, time.monotonic() - t1

    def _revert(self, inst):
        """revert_resize at the destination, finish_revert_resize at the
        source."""
        t0 = time.monotonic()
        inst.task_state = task_states.RESIZE_REVERTING
        self.drv.destroy(self.context, inst, [], None, True)
        inst.flavor = inst.old_flavor
        self.drv.finish_revert_migration(self.context, inst, [],
                                         mock.sentinel.migration, None, True)
        inst.task_state = None
        return time.monotonic() - t0

    def _report(self, drv, inst, boot):
        text = self.wait_console(drv, inst, 'report boot=%d ' % boot)
        found = [m for m in REPORT.finditer(text)
                 if m.group(1) == str(boot)]
        self.assertTrue(found, text[-2000:])
        b, mark, note, cpus, mem, rootkb = found[-1].groups()
        return {'mark': mark, 'note': note, 'cpus': int(cpus),
                'mem_kb': int(mem), 'root_kb': int(rootkb)}

    def _dirs(self, inst):
        return sorted(n for n in os.listdir(self.drv.instances_path)
                      if n.startswith(inst.uuid))

    def test_container_resize_then_revert(self):
        image = self.container_image(REPORTING_CMD)
        inst = self.spawn(self.drv, image, memory_mb=128, vcpus=1, root_gb=1)
        first = self._report(self.drv, inst, 1)
        self.assertEqual(('from-first-boot', 1), (first['mark'],
                                                  first['cpus']))
        upper = os.path.join(self.drv.instances_path, inst.uuid, 'upper')
        self.assertEqual(units.Gi, os.path.getsize(upper))

        t_move, t_finish = self._resize(inst, _flavor('bigger', 2, 192, 2))
        t_up0 = time.monotonic()
        resized = self._report(self.drv, inst, 2)
        t_up = time.monotonic() - t_up0
        self.addDetail('timings', _text(
            'container resize: power off + disks moved %.2fs, finish '
            '(grow + define + start) %.2fs, then to the workload %.2fs' %
            (t_move, t_finish, t_up)))
        self._assert_flavor(inst, 2, 192)
        self.assertEqual(['%s' % inst.uuid, '%s_resize' % inst.uuid],
                         self._dirs(inst))
        # the files of before, a bigger filesystem, the new CPUs and RAM
        self.assertEqual('from-first-boot', resized['mark'])
        self.assertEqual('from-resized-boot', resized['note'])
        self.assertEqual(2, resized['cpus'])
        self.assertGreater(resized['mem_kb'], first['mem_kb'] + 50 * 1024)
        self.assertGreater(resized['root_kb'], first['root_kb'] * 1.8)
        self.assertEqual(2 * units.Gi, os.path.getsize(upper))
        self.assertIn('nova-clear: ready %s' % inst.uuid,
                      self.console(self.drv, inst))

        # revert: the original, its data as they were before the resize
        t_revert = self._revert(inst)
        original = self._report(self.drv, inst, 2)
        self.addDetail('revert', _text('revert %.2fs' % t_revert))
        self.assertEqual(power_state.RUNNING,
                         self.drv.get_info(inst).state)
        self._assert_flavor(inst, 1, 128)
        self.assertEqual('from-first-boot', original['mark'])
        self.assertEqual('', original['note'])   # written after the resize
        self.assertEqual(first['root_kb'], original['root_kb'])
        self.assertEqual(1, original['cpus'])
        self.assertEqual([inst.uuid], self._dirs(inst))
        self.assertEqual(units.Gi, os.path.getsize(upper))

        inst.task_state = task_states.DELETING
        self.drv.destroy(self.context, inst, [])
        self.assert_gone(self.drv, inst)
        self.assertEqual([], self._dirs(inst))

    def test_disk_image_resize_then_confirm(self):
        image = self.glance.add(images.disk_image('qcow2'), 'qcow2')
        inst = self.spawn(self.drv, image, memory_mb=128, vcpus=1, root_gb=1)
        ready = 'disk-init: up on %s' % inst.hostname
        self.wait_console(self.drv, inst, ready)
        disk = os.path.join(self.drv.instances_path, inst.uuid, 'disk')

        t_move, t_finish = self._resize(inst, _flavor('bigger', 2, 256, 3))
        self.wait_console(self.drv, inst, ready)
        self.addDetail('timings', _text(
            'disk image resize: power off + disks moved %.2fs, finish %.2fs'
            % (t_move, t_finish)))
        self._assert_flavor(inst, 2, 256)
        self.assertEqual(3 * units.Gi, _virtual_size(disk))
        saved = os.path.join(self.drv.instances_path,
                             inst.uuid + '_resize')
        self.assertEqual(units.Gi, _virtual_size(os.path.join(saved,
                                                              'disk')))

        self.drv.confirm_migration(self.context, mock.sentinel.migration,
                                   inst, [])
        self.assertFalse(os.path.exists(saved))
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)
        self.drv.destroy(self.context, inst, [])
        self.assert_gone(self.drv, inst)

    def test_shrink_refused_instance_keeps_running(self):
        image = self.glance.add(images.disk_image('qcow2'), 'qcow2')
        inst = self.spawn(self.drv, image, root_gb=2)
        self.wait_console(self.drv, inst, 'disk-init: up')
        self.assertRaises(exception.InstanceFaultRollback,
                          self.drv.migrate_disk_and_power_off, self.context,
                          inst, CONF.my_ip, _flavor('small', 1, 128, 1), [])
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)
        self.assertEqual([inst.uuid], self._dirs(inst))


def _virtual_size(path):
    out = subprocess.run(['qemu-img', 'info', '-U', '--output=json', path],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)['virtual-size']


def _text(s):
    return content.text_content(s)
