"""Container images (made by buildah) run as Clear Containers, for real."""

import json
import os
import shutil

from nova.compute import power_state
from nova.virt import event as virtevent

from nova_clear import exception as clear_exc
from tests.functional import base
from tests.functional import hostile
from tests.functional import images


class TestContainerImages(base.FunctionalTestCase):

    def _rootfs_dir(self, drv):
        return drv.rootfs_cache.path

    def test_docker_archive_runs_its_config(self):
        drv = self.make_driver()
        image = self.glance.add(images.container_image('docker'), 'raw',
                                container_format='docker')
        inst = self.spawn(drv, image)
        text = self.wait_console(drv, inst, 'workload exited status=3')
        self.assertIn('nova-clear: ready %s' % inst.uuid, text)
        # Entrypoint + Cmd, Env, WorkingDir and User of the image config.
        self.assertIn('container says: hello from /data as uid 1000', text)
        self.assertIn('greeting file from the image', text)
        self.events.wait_for(inst.uuid, virtevent.EVENT_LIFECYCLE_STOPPED)
        self.assertEqual(power_state.SHUTDOWN, drv.get_info(inst).state)
        drv.destroy(self.context, inst, None)
        self.assert_gone(drv, inst)

    def test_oci_layout_recognised_by_content_with_overrides(self):
        drv = self.make_driver()
        image = self.glance.add(
            images.container_image('oci'), 'raw',
            # The image's Entrypoint is ["/bin/sh", "-c"]: Cmd is one script.
            properties={
                'clear_cmd': json.dumps(
                    ['echo override $GREETING in $(pwd) as uid $(id -u); '
                     'exit 0']),
                'clear_env': '{"GREETING": "bonjour"}',
                'clear_user': '0', 'clear_workdir': '/tmp'})
        inst = self.spawn(drv, image)
        text = self.wait_console(drv, inst, 'workload exited status=0')
        self.assertIn('override bonjour in /tmp as uid 0', text)
        self.assertNotIn('container says', text)

    def test_two_instances_share_one_rootfs(self):
        drv = self.make_driver()
        image = self.glance.add(images.container_image('docker'), 'raw',
                                container_format='docker')
        a = self.spawn(drv, image)
        b = self.spawn(drv, image)
        for inst in (a, b):
            self.wait_console(drv, inst, 'workload exited status=3')
        shared = [f for f in os.listdir(self._rootfs_dir(drv))
                  if f.endswith('.ext4')]
        self.assertEqual(1, len(shared))
        path = os.path.join(self._rootfs_dir(drv), shared[0])
        self.assertEqual(0o444, os.stat(path).st_mode & 0o777)
        for inst in (a, b):
            xml = open(os.path.join(self.conf.conf['clear'].instances_path,
                                    inst.uuid, 'domain.xml')).read()
            self.assertIn(path, xml)
            self.assertIn('<readonly', xml)
        # Each instance wrote to its own layer: the shared image is intact.
        drv.destroy(self.context, a, None)
        drv.destroy(self.context, b, None)
        self.assert_gone(drv, a)
        self.assertTrue(os.path.exists(path))

    def test_lost_rootfs_rebuilt_on_power_on(self):
        drv = self.make_driver()
        image = self.glance.add(images.container_image('docker'), 'raw',
                                container_format='docker')
        inst = self.spawn(drv, image)
        self.wait_console(drv, inst, 'workload exited status=3')
        self.events.wait_for(inst.uuid, virtevent.EVENT_LIFECYCLE_STOPPED)
        # The cache loses the root filesystem (an operator, a wipe).
        shutil.rmtree(self._rootfs_dir(drv))
        drv.power_on(self.context, inst, None)
        text = self.wait_console(drv, inst, 'workload exited status=3',
                                 count=2)
        self.assertIn('container says: hello from /data as uid 1000', text)
        shared = [f for f in os.listdir(self._rootfs_dir(drv))
                  if f.endswith('.ext4')]
        self.assertEqual(1, len(shared))
        xml = open(os.path.join(self.conf.conf['clear'].instances_path,
                                inst.uuid, 'domain.xml')).read()
        self.assertIn(os.path.join(self._rootfs_dir(drv), shared[0]), xml)

    def test_hostile_layer_refused_nothing_left(self):
        drv = self.make_driver()
        path = os.path.join(self.tmp, 'hostile.tar')
        hostile.docker_archive(path, [hostile.layer([('../../etc/evil',
                                                      b'x')])])
        image = self.glance.add(path, 'raw', container_format='docker')
        inst = self.make_instance(image)
        err = self.assertRaises(clear_exc.LayerRefused, drv.spawn,
                                self.context, inst,
                                self.glance.image_meta(image), [], None, {})
        self.assertIn('../../etc/evil', str(err))
        self.assertIn('path leaves the root', str(err))
        self.assert_gone(drv, inst)
        left = [f for f in os.listdir(self._rootfs_dir(drv))
                if f not in ('locks', 'by-image')]
        self.assertEqual([], left)


class TestConfigDrive(base.FunctionalTestCase):

    def test_container_sees_metadata_and_key(self):
        self.config_drive_without_services()
        drv = self.make_driver()
        image = self.glance.add(
            images.container_image('docker'), 'raw',
            container_format='docker',
            properties={'clear_user': '0', 'clear_cmd': json.dumps(
                ['cat /.nova-clear/config-drive/openstack/latest/'
                 'meta_data.json; echo; cat /root/.ssh/authorized_keys'])})
        inst = self.make_instance(image)
        inst.key_data = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITEST test@nova'
        inst.key_name = 'test'
        drv.spawn(self.context, inst, self.glance.image_meta(image), [],
                  None, {})
        self.addCleanup(self._destroy_quietly, drv, inst)
        text = self.wait_console(drv, inst, 'workload exited status=0')
        self.assertIn('"uuid": "%s"' % inst.uuid, text)
        self.assertIn('"hostname": "%s.' % inst.hostname, text)
        self.assertIn(inst.key_data, text)
        self.assertTrue(inst.config_drive)
