"""Snapshots on real libvirt + QEMU: a disk-image instance snapshotted live
and its snapshot booted; a container instance's changes committed as a
new layer and the snapshot booted as a container image."""

import json
import os
import subprocess
import time
from unittest import mock

from nova.compute import power_state
from nova.compute import task_states
from nova.compute import utils as compute_utils
from nova.image import glance as nova_glance
from nova.virt import event as virtevent

from nova_clear.images import oci
from tests.functional import base
from tests.functional import images


class TestSnapshot(base.FunctionalTestCase):

    def _create_image(self, inst):
        # What the compute API does before it casts to the compute host.
        return compute_utils.create_image(
            self.context, inst, 'snap-of-%s' % inst.hostname, 'snapshot',
            nova_glance.API())

    def _snapshot(self, drv, inst):
        image = self._create_image(inst)
        states = []

        def update_task_state(task_state,
                              expected_state=task_states.IMAGE_SNAPSHOT):
            states.append((task_state, expected_state))
        t0 = time.monotonic()
        drv.snapshot(self.context, inst, image['id'], update_task_state)
        elapsed = time.monotonic() - t0
        self.assertEqual(
            [(task_states.IMAGE_PENDING_UPLOAD, task_states.IMAGE_SNAPSHOT),
             (task_states.IMAGE_UPLOADING,
              task_states.IMAGE_PENDING_UPLOAD)], states)
        self._no_temp_left(inst)
        times = os.environ.get('NOVA_CLEAR_SNAPSHOT_TIMES')
        if times:
            with open(times, 'a') as f:
                f.write('%s %.2fs\n' % (self.id(), elapsed))
        return self.glance.show(None, image['id'])

    def _no_temp_left(self, inst):
        inst_dir = os.path.join(self.conf.conf['clear'].instances_path,
                                inst.uuid)
        self.assertEqual([], [f for f in os.listdir(inst_dir)
                              if f.startswith('snapshot-')])

    def test_disk_image_live_snapshot_boots(self):
        drv = self.make_driver()
        image = self.glance.add(images.disk_image('fs'), 'raw',
                                properties={'os_distro': 'busybox'})
        inst = self.spawn(drv, image)
        self.wait_console(drv, inst, 'disk-init: up on %s' % inst.hostname)

        # A failed upload: the guest runs on, nothing is left behind.
        failed = self._create_image(inst)
        with mock.patch.object(self.glance, 'update',
                               side_effect=OSError('glance is down')):
            self.assertRaises(OSError, drv.snapshot, self.context, inst,
                              failed['id'], lambda **kw: None)
        self.assertEqual(power_state.RUNNING, drv.get_info(inst).state)
        self._no_temp_left(inst)

        snap = self._snapshot(drv, inst)
        self.assertEqual(power_state.RUNNING, drv.get_info(inst).state)
        self.assertEqual('active', snap['status'])
        self.assertEqual('qcow2', snap['disk_format'])
        self.assertEqual('bare', snap['container_format'])
        props = snap['properties']
        self.assertEqual('snapshot', props['image_location'])
        self.assertEqual('snapshot', props['image_type'])
        self.assertEqual(inst.uuid, props['instance_uuid'])
        self.assertEqual('busybox', props['os_distro'])   # inherited
        info = json.loads(subprocess.run(
            ['qemu-img', 'info', '--output=json', self.glance.images[
                snap['id']]['path']], check=True, capture_output=True,
            text=True).stdout)
        self.assertEqual('qcow2', info['format'])
        self.assertNotIn('backing-filename', info)    # flattened

        second = self.spawn(drv, snap['id'])
        self.wait_console(drv, second,
                          'disk-init: up on %s' % second.hostname)
        self.wait_ready(drv, second)

    def test_container_snapshot_is_a_container_image(self):
        drv = self.make_driver()
        image = self.glance.add(
            images.container_image('docker'), 'raw',
            container_format='docker',
            properties={'clear_user': '0', 'clear_cmd': json.dumps([
                'echo made by the instance > /tmp/made && '
                'busybox ln /tmp/made /tmp/made2 && '
                'busybox rm /bin/sleep && '
                'busybox rm -r /data && busybox mkdir /data && '
                'echo new in an opaque dir > /data/new && '
                'busybox sync && echo changes done; exit 0'])})
        inst = self.spawn(drv, image)
        self.wait_console(drv, inst, 'workload exited status=0')
        self.events.wait_for(inst.uuid, virtevent.EVENT_LIFECYCLE_STOPPED)
        self.assertIn('changes done', self.console(drv, inst))

        snap = self._snapshot(drv, inst)
        self.assertEqual(('raw', 'docker', 'active'),
                         (snap['disk_format'], snap['container_format'],
                          snap['status']))
        archive = oci.open_archive(self.glance.images[snap['id']]['path'],
                                   snap['id'])
        self.assertEqual('docker-archive', archive.kind)
        self.assertEqual(2, len(archive.layers))
        self.assertEqual(['/bin/sh', '-c'],
                         archive.config['config']['Entrypoint'])
        self.assertIn('GREETING=hello', archive.config['config']['Env'])
        # The instance's properties came along; say what to run now.
        self.assertIn('rm /bin/sleep', snap['properties']['clear_cmd'])
        self.glance.images[snap['id']]['properties']['clear_cmd'] = \
            json.dumps([
                'cat /tmp/made /tmp/made2 /data/new; '
                'for f in /data/greeting /bin/sleep /.nova-clear/run; do '
                '[ -e $f ] && echo present $f || echo gone $f; done; '
                'echo env $GREETING; exit 0'])
        second = self.spawn(drv, snap['id'])
        text = self.wait_console(drv, second, 'workload exited status=0')
        self.assertEqual(2, text.count('made by the instance'))
        self.assertIn('new in an opaque dir', text)
        self.assertIn('gone /data/greeting', text)   # the opaque directory
        self.assertIn('gone /bin/sleep', text)       # the whiteout
        self.assertIn('present /.nova-clear/run', text)   # this boot's
        self.assertIn('env hello', text)
