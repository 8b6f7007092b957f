"""A Clear Container's whole life through the driver, on real libvirt+QEMU."""

from concurrent import futures
import os
import signal
import subprocess

from nova.compute import power_state
from nova.virt import event as virtevent

from tests.functional import base
from tests.functional import images


class TestLifecycle(base.FunctionalTestCase):

    def test_full_lifecycle(self):
        drv = self.make_driver()
        image = self.glance.add(images.disk_image('fs'), 'raw')
        inst = self.spawn(drv, image)

        self.wait_ready(drv, inst)
        self.wait_console(drv, inst, 'disk-init: up on %s' % inst.hostname)
        self.assertEqual(power_state.RUNNING, drv.get_info(inst).state)
        self.events.wait_for(inst.uuid, virtevent.EVENT_LIFECYCLE_STARTED)
        self.assertIn(inst.name, drv.list_instances())
        self.assertIn(inst.uuid, drv.list_instance_uuids())

        # Soft reboot: the guest's own init handles the power button.
        drv.reboot(self.context, inst, None, 'SOFT')
        text = self.wait_ready(drv, inst, count=2)
        self.assertIn('disk-init: power button, shutting down', text)
        self.assertEqual(power_state.RUNNING, drv.get_info(inst).state)

        drv.reboot(self.context, inst, None, 'HARD')
        self.wait_ready(drv, inst, count=3)

        # Graceful power off, then on again.
        drv.power_off(inst, timeout=60, retry_interval=10)
        self.assertEqual(power_state.SHUTDOWN, drv.get_info(inst).state)
        self.assertEqual(
            2, self.console(drv, inst).count('power button, shutting down'))
        drv.power_on(self.context, inst, None)
        self.wait_ready(drv, inst, count=4)

        drv.pause(inst)
        self.assertEqual(power_state.PAUSED, drv.get_info(inst).state)
        drv.unpause(inst)
        self.assertEqual(power_state.RUNNING, drv.get_info(inst).state)

        drv.suspend(self.context, inst)
        self.assertEqual(power_state.SUSPENDED, drv.get_info(inst).state)
        drv.resume(self.context, inst, None)
        self.assertEqual(power_state.RUNNING, drv.get_info(inst).state)
        # Resumed from saved memory: no new boot.
        self.assertEqual(4, self.console(drv, inst).count(
            'nova-clear: ready %s' % inst.uuid))
        # A hard reboot of a suspended instance boots afresh.
        drv.suspend(self.context, inst)
        drv.reboot(self.context, inst, None, 'HARD')
        self.wait_ready(drv, inst, count=5)

        drv.destroy(self.context, inst, None)
        self.assert_gone(drv, inst)

    def test_forced_power_off_when_guest_ignores_button(self):
        drv = self.make_driver()
        # The workload is a shell that ignores the power button.
        image = self.glance.add(
            images.disk_image('fs'), 'raw',
            properties={'os_command_line':
                        'init=/bin/sh -- -c "trap : TERM; echo started; '
                        'while :; do sleep 1; done"'})
        inst = self.spawn(drv, image)
        self.wait_console(drv, inst, 'started')
        drv.power_off(inst, timeout=3, retry_interval=1)
        self.assertEqual(power_state.SHUTDOWN, drv.get_info(inst).state)

    def test_workload_exit_powers_off(self):
        drv = self.make_driver()
        image = self.glance.add(
            images.disk_image('part'), 'raw',
            properties={'os_command_line':
                        'init=/bin/sh -- -c "echo workload on $(hostname); '
                        'exit 7"'})
        inst = self.spawn(drv, image)
        text = self.wait_console(drv, inst, 'workload exited status=7')
        self.assertIn('workload on %s' % inst.hostname, text)
        self.events.wait_for(inst.uuid, virtevent.EVENT_LIFECYCLE_STOPPED)
        self.assertEqual(power_state.SHUTDOWN, drv.get_info(inst).state)
        drv.destroy(self.context, inst, None)
        self.assert_gone(drv, inst)

    def test_two_instances_share_cached_base(self):
        drv = self.make_driver()
        image = self.glance.add(images.disk_image('qcow2'), 'qcow2')
        downloads = []
        real_download = self.glance.download

        def counting_download(*args, **kwargs):
            downloads.append(args[1])
            return real_download(*args, **kwargs)
        self.glance.download = counting_download
        # Two spawns of a new image at once, from two threads (nova 34
        # calls drivers from native threads): one download, one base.
        with futures.ThreadPoolExecutor(2) as pool:
            a, b = pool.map(lambda _: self.spawn(drv, image), range(2))
        self.assertEqual([image], downloads)
        self.wait_ready(drv, a)
        self.wait_ready(drv, b)
        cache = drv.image_cache.path
        self.assertEqual([image], drv.image_cache.cached_ids())
        base_path = os.path.join(cache, image)
        self.assertEqual(0o444, os.stat(base_path).st_mode & 0o777)
        for inst in (a, b):
            info = subprocess.run(
                ['qemu-img', 'info', '-U', '--output=json',
                 os.path.join(self.conf.conf['clear'].instances_path,
                              inst.uuid, 'disk')],
                check=True, capture_output=True, text=True).stdout
            self.assertIn('"backing-filename": "%s"' % base_path, info)
            self.assertIn('"virtual-size": %d' % (1024 ** 3), info)
        drv.destroy(self.context, a, None)
        drv.destroy(self.context, b, None)
        self.assert_gone(drv, a)
        self.assert_gone(drv, b)
        # The shared base stays cached for the next spawn.
        self.assertTrue(os.path.exists(base_path))

    def test_qemu_killed_under_running_instance(self):
        drv = self.make_driver()
        image = self.glance.add(images.disk_image('fs'), 'raw')
        inst = self.spawn(drv, image)
        self.wait_ready(drv, inst)
        pid = _qemu_pid(inst.uuid)
        os.kill(pid, signal.SIGKILL)
        self.events.wait_for(inst.uuid, virtevent.EVENT_LIFECYCLE_STOPPED)
        self.assertEqual(power_state.SHUTDOWN, drv.get_info(inst).state)
        # The instance can be started again, and deleted cleanly.
        drv.power_on(self.context, inst, None)
        self.wait_ready(drv, inst, count=2)
        drv.destroy(self.context, inst, None)
        self.assert_gone(drv, inst)

    def test_destroy_keeping_disks(self):
        drv = self.make_driver()
        image = self.glance.add(images.disk_image('fs'), 'raw')
        inst = self.spawn(drv, image)
        drv.destroy(self.context, inst, None, destroy_disks=False)
        self.assertNotIn(inst.uuid, drv.list_instance_uuids())
        disk = os.path.join(self.conf.conf['clear'].instances_path,
                            inst.uuid, 'disk')
        self.assertTrue(os.path.exists(disk))
        drv.cleanup(self.context, inst, None, destroy_disks=True)
        self.assert_gone(drv, inst)


def _qemu_pid(uuid):
    out = subprocess.run(['pgrep', '-f', 'qemu-system.*%s' % uuid],
                         capture_output=True, text=True).stdout.split()
    assert len(out) == 1, out
    return int(out[0])
