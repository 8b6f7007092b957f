"""Rebuild and rescue on real libvirtd + QEMU."""

import os
import time

from nova.compute import task_states
from nova import exception
from nova.virt import fake as fake_virt

from tests.functional import base
from tests.functional import images
from tests.functional import provider_net
from tests.unit.test_network import make_vif

# A container that tells its disks apart: booted as itself it marks its
# root; booted as rescue (its writable disk at /dev/vdc) it reads the mark
# through that disk and leaves a note the original finds.
RESCUABLE_CMD = (
    'echo "disks: $(ls /dev | grep "^vd" | tr "\\n" " ")"; '
    'if [ -b /dev/vdc ]; then mkdir -p /mnt/r && mount /dev/vdc /mnt/r && '
    'echo "rescue sees: $(cat /mnt/r/upper/root/mark)" && '
    'echo fixed-in-rescue > /mnt/r/upper/root/note && umount /mnt/r; '
    'echo rescue-done; '
    'else mkdir -p /root; echo "note: $(cat /root/note 2>/dev/null)"; '
    'echo persisted > /root/mark; echo booted-original; fi; '
    'exec sleep 3600')


class RecordingVirtAPI(fake_virt.FakeVirtAPI):
    """Records the events spawn waits for; waiting for any times out at
    once (Neutron sends nothing for ports that stay up)."""

    def __init__(self):
        super().__init__()
        self.waited = []

    def wait_for_instance_event(self, instance, event_names, **kwargs):
        self.waited.append(list(event_names))
        if event_names:
            raise exception.InstanceEventTimeout()
        return super().wait_for_instance_event(instance, event_names,
                                               **kwargs)


class TestRebuild(base.FunctionalTestCase):

    def setUp(self):
        super().setUp()
        self.net = self.useFixture(provider_net.ProviderNetwork(
            prefix='10.78.0', prefix6='fd00:78::'))
        self.drv = self.make_driver()
        self.virtapi = RecordingVirtAPI()
        self.drv.virtapi = self.virtapi

    def _vif(self, n, active):
        return make_vif(port='port-%d' % n, mac='fa:16:3e:78:00:%02x' % n,
                        source=self.net.lower, mtu=1500,
                        cidr='%s.0/24' % self.net.prefix,
                        ip=self.net.address(n), gateway=self.net.gateway,
                        dns=(self.net.gateway,), active=active)

    def _disk_image(self, word):
        return self.glance.add(
            images.disk_image('fs'), 'raw',
            properties={'os_command_line':
                        'init=/bin/sh -- -c "echo booted-%s; '
                        'while :; do sleep 1; done"' % word})

    def _rebuild(self, inst, image_id, network_info):
        """Nova's default rebuild (compute manager _rebuild_default_impl)."""
        t0 = time.monotonic()
        inst.task_state = task_states.REBUILDING
        self.drv.power_off(inst, timeout=5, retry_interval=1)
        self.drv.destroy(self.context, inst, network_info)
        inst.task_state = task_states.REBUILD_SPAWNING
        inst.image_ref = image_id
        self.drv.spawn(self.context, inst, self.glance.image_meta(image_id),
                       [], None, {}, network_info=network_info)
        return time.monotonic() - t0

    def test_rebuild_with_port_to_other_images(self):
        first = self._disk_image('first')
        inst = self.make_instance(first)
        vif = self._vif(11, active=True)
        self.drv.spawn(self.context, inst, self.glance.image_meta(first),
                       [], None, {}, network_info=[vif])
        self.addCleanup(self._destroy_quietly, self.drv, inst)
        self.wait_console(self.drv, inst, 'booted-first')

        # another disk image, the ports up: nothing to wait for (the
        # virtapi records every wait, checked below; the time is printed,
        # not asserted: timing belongs to the benchmarks)
        took = self._rebuild(inst, self._disk_image('second'), [vif])
        print('rebuild to another disk image with a port: %.2fs' % took)
        text = self.wait_console(self.drv, inst, 'booted-second')
        self.assertNotIn('booted-first', text)   # new instance files
        self.assertIn('network eth0 fa:16:3e:78:00:0b mtu 1500', text)
        self.assertEqual(1, len(provider_net.macvtaps_with([vif['address']])))

        # a container image, the cache stale (port "down"): no wait either
        ctr = self.container_image('echo booted-container; exec sleep 3600')
        self._rebuild(inst, ctr, [self._vif(11, active=False)])
        self.wait_console(self.drv, inst, 'booted-container')
        files = os.listdir(os.path.join(self.drv.instances_path, inst.uuid))
        self.assertIn('upper', files)
        self.assertNotIn('disk', files)
        # and again to the same image: a fresh writable disk
        self._rebuild(inst, ctr, [vif])
        self.wait_console(self.drv, inst, 'booted-container')
        # spawn never waited for an event
        self.assertEqual([], self.virtapi.waited)
        self.drv.destroy(self.context, inst, [vif])
        self.assert_gone(self.drv, inst)


class TestRescue(base.FunctionalTestCase):

    def console(self, drv, instance):
        return super().console(drv, instance).replace('\r', '')

    def test_rescue_and_unrescue_container(self):
        drv = self.make_driver()
        image = self.container_image(RESCUABLE_CMD)
        inst = self.spawn(drv, image)
        text = self.wait_console(drv, inst, 'booted-original')
        self.assertIn('disks: vda vdb \n', text)
        d = os.path.join(drv.instances_path, inst.uuid)
        before = sorted(os.listdir(d))
        with open(os.path.join(d, 'domain.xml')) as f:
            original = f.read()

        t0 = time.monotonic()
        # as nova's compute manager: a clean power off first
        drv.power_off(inst, timeout=30, retry_interval=5)
        t_off = time.monotonic() - t0
        t0 = time.monotonic()
        drv.rescue(self.context, inst, None, self.glance.image_meta(image),
                   'pw', None, None)
        t_rescue = time.monotonic() - t0
        text = self.wait_console(drv, inst, 'rescue-done')
        t_rescue_up = time.monotonic() - t0
        self.assertIn('disks: vda vdb vdc \n', text)
        self.assertIn('rescue sees: persisted', text)
        self.assertIn('rescue', os.listdir(d))

        t0 = time.monotonic()
        drv.unrescue(self.context, inst)
        t_unrescue = time.monotonic() - t0
        text = self.wait_console(drv, inst, 'booted-original', count=2)
        t_unrescue_up = time.monotonic() - t0
        # the original again, with what the rescue wrote on its disk
        self.assertIn('note: fixed-in-rescue', text)
        self.assertEqual(2, text.count('disks: vda vdb \n'))
        self.assertEqual(before, sorted(os.listdir(d)))
        with open(os.path.join(d, 'domain.xml')) as f:
            self.assertEqual(original, f.read())
        print('container: clean power off %.2fs, rescue %.2fs (rescue '
              'workload up after %.2fs); unrescue %.2fs (workload up after '
              '%.2fs)' % (t_off, t_rescue, t_rescue_up, t_unrescue,
                          t_unrescue_up))
        drv.destroy(self.context, inst, None)
        self.assert_gone(drv, inst)

    def test_rescue_disk_instance_with_other_image(self):
        drv = self.make_driver()
        own = self.glance.add(
            images.disk_image('fs'), 'raw',
            properties={'os_command_line':
                        'init=/bin/sh -- -c "echo booted-own; '
                        'while :; do sleep 1; done"'})
        rescue_image = self.glance.add(
            images.disk_image('part'), 'raw',
            properties={'os_command_line':
                        'init=/bin/sh -- -c "echo rescue-disks: '
                        '$(ls /dev/vd*); while :; do sleep 1; done"'})
        inst = self.spawn(drv, own)
        self.wait_console(drv, inst, 'booted-own')
        drv.power_off(inst)
        drv.rescue(self.context, inst, None,
                   self.glance.image_meta(rescue_image), 'pw', None, None)
        text = self.wait_console(drv, inst, 'rescue-disks:')
        line = [x for x in text.splitlines() if 'rescue-disks:' in x][-1]
        self.assertIn('/dev/vdb', line.split())
        self.assertIn(rescue_image, os.listdir(drv.image_cache.path))
        drv.unrescue(self.context, inst)
        self.wait_console(drv, inst, 'booted-own', count=2)
        self.assertFalse(os.path.exists(os.path.join(
            drv.instances_path, inst.uuid, 'rescue')))
