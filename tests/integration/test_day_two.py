"""Day-two operations through the real Nova: snapshot (``openstack server
image create``), rescue/unrescue, rebuild of a server with a port and
resize.

The driver's side of these is in nova_clear/snapshot.py (with
nova_clear/images/commit.py), nova_clear/rescue.py and the rebuild path of
nova_clear/vif.py / vif_events.py (no wait for network-vif-plugged while
``task_state == rebuild_spawning``).  The API-measured durations of the
container server's snapshot, rescue, unrescue and rebuild are attached to
each test as the ``timings`` detail: the client's (the ``openstack`` command,
``--wait`` polls every few seconds) and the API's (``api ...``: from the
instance action's start, the request, to the end of its compute event, as
``openstack server event show`` reports them), also appended to
``$AIO_HOME/logs/day-two-timings.jsonl``.  Resize (revert, then
confirm) of a container server: nova_clear/migration.py.
"""

import datetime
import json
import os
import time


from tests.integration import base

# Marks its root on the first boot; a server booted from its snapshot finds
# the mark (the snapshot image inherits clear_cmd).
SNAP_CMD = (
    'if [ -e /root/mark ]; then echo "found mark: $(cat /root/mark)"; '
    'else mkdir -p /root && echo written-before-snapshot > /root/mark && '
    'busybox sync && echo wrote-mark; fi; exec sleep 3600')
# Booted as itself it marks its root; booted as the rescue image (the
# server's writable disk at /dev/vdc) it reads the mark through that disk
# and leaves a note the original finds after unrescue.
RESCUABLE_CMD = (
    'if [ -b /dev/vdc ]; then mkdir -p /mnt/r && mount /dev/vdc /mnt/r && '
    'echo "rescue sees: $(cat /mnt/r/upper/root/mark)" && '
    'echo fixed-in-rescue > /mnt/r/upper/root/note && umount /mnt/r; '
    'echo rescue-done; '
    'else mkdir -p /root; echo "note: $(cat /root/note 2>/dev/null)"; '
    'echo persisted > /root/mark; busybox sync; echo booted-original; fi; '
    'exec sleep 3600')


class TestDayTwo(base.IntegrationTestCase):

    def setUp(self):
        super().setUp()
        self.timings = self.recorded_figures('day-two-timings.jsonl',
                                             'timings')

    def timed(self, what, fn, *args):
        t0 = time.monotonic()
        result = fn(*args)
        self.timings[what] = round(time.monotonic() - t0, 2)
        return result

    def action_time(self, what, server, action, event):
        """Records the API's duration of the last ``action`` of
        ``server``: from its start to the end of its ``event``."""
        def when(text):
            return datetime.datetime.fromisoformat(text.rstrip('Z'))
        actions = [a for a in self.conn.compute.server_actions(server)
                   if a.action == action]
        self.assertTrue(actions, 'no %s action' % action)
        last = max(actions, key=lambda a: a.start_time)
        detail = self.conn.compute.get_server_action(last.request_id,
                                                     server)
        events = [e for e in detail.events if e['event'] == event]
        self.assertEqual(1, len(events), detail.events)
        self.assertEqual('Success', events[0]['result'])
        self.timings['api ' + what] = round((
            when(events[0]['finish_time']) -
            when(last.start_time)).total_seconds(), 2)

    def console(self, server):
        return super().console(server).replace('\r', '')

    def snapshot(self, server):
        """``openstack server image create --wait``; the image, deleted
        in a cleanup."""
        name = self.name('snap')
        self.addCleanup(self.delete_images, name)
        out = json.loads(self.cli('server', 'image', 'create', '--wait',
                                  '--name', name, '-f', 'json', server.id))
        image = self.conn.image.get_image(out['id'])
        self.assertEqual('active', image.status)
        return image

    def delete_images(self, name):
        for image in self.conn.image.images(name=name):
            self.conn.image.delete_image(image, ignore_missing=True)

    def assert_no_fault(self, server):
        server = self.conn.compute.get_server(server)
        self.assertEqual('ACTIVE', server.status)
        self.assertIsNone(server.task_state)
        self.assertNotIn('VifPlugTimeout',
                         json.dumps(server.fault or {}))
        return server

    # -- snapshot -----------------------------------------------------

    def test_container_snapshot_boots_with_the_written_file(self):
        image = self.container_image(SNAP_CMD)
        server = self.create('snapc', image=image.id)
        self.wait_console(server, 'wrote-mark')

        snap = self.timed('container snapshot (image create --wait)',
                          self.snapshot, server)
        self.action_time('container snapshot', server, 'createImage',
                         'compute_snapshot_instance')
        self.assertEqual(('raw', 'docker'),
                         (snap.disk_format, snap.container_format))
        # the snapshot leaves the server running its workload
        self.assert_no_fault(server)
        self.assertEqual(1, self.console(server).count('wrote-mark'))

        second = self.create('fromsnap', image=snap.id)
        text = self.wait_console(second, 'found mark:')
        self.assertIn('found mark: written-before-snapshot', text)
        self.assertNotIn('wrote-mark', text)

    def test_disk_image_snapshot_boots(self):
        server = self.create('snapd')
        self.wait_console(server, self.workload_line(server))

        snap = self.timed('disk snapshot (image create --wait)',
                          self.snapshot, server)
        self.assertEqual('bare', snap.container_format)
        self.assertEqual(server.id, snap.instance_uuid)
        self.assert_no_fault(server)

        second = self.create('fromsnapd', image=snap.id)
        self.wait_console(second, self.workload_line(second))

    # -- rescue -------------------------------------------------------

    def test_rescue_and_unrescue_container(self):
        image = self.container_image(RESCUABLE_CMD)
        server = self.create('rescue', image=image.id)
        self.wait_console(server, 'booted-original')

        def rescue():
            self.cli('server', 'rescue', server.id)
            return self.wait_status(server, 'RESCUE')
        self.timed('rescue (to RESCUE)', rescue)
        self.action_time('rescue', server, 'rescue',
                         'compute_rescue_instance')
        text = self.wait_console(server, 'rescue-done')
        self.assertIn('rescue sees: persisted', text)
        self.assertIsNotNone(self.libvirt_domain(server.id))

        def unrescue():
            self.cli('server', 'unrescue', server.id)
            return self.wait_status(server, 'ACTIVE')
        self.timed('unrescue (to ACTIVE)', unrescue)
        self.action_time('unrescue', server, 'unrescue',
                         'compute_unrescue_instance')
        # the original workload again (the console log goes on), with
        # what the rescue wrote
        text = self.wait_console(server, 'booted-original', count=2)
        self.assertIn('note: fixed-in-rescue', text)
        self.assert_no_fault(server)

    # -- rebuild ------------------------------------------------------

    def test_rebuild_server_with_port(self):
        net = self.state.get('network') or {}
        if not net.get('network_id'):
            self.skipTest('the all-in-one has no provider network: run '
                          'tools/allinone up')
        first = self.container_image('echo first-image-up; exec sleep 3600',
                                     'rb1')
        second = self.container_image(
            'echo second-image-up; exec sleep 3600', 'rb2')
        name = self.name('rebuild')
        self.addCleanup(self.delete_by_name, name)
        out = json.loads(self.cli(
            'server', 'create', '--wait', '-f', 'json', '--image', first.id,
            '--flavor', 'clear.tiny', '--nic',
            'net-id=%s' % net['network_id'], name))
        server = self.conn.compute.get_server(out['id'])
        self.wait_console(server, 'first-image-up')
        port = list(self.conn.network.ports(device_id=server.id))[0]

        self.timed('rebuild with a port (rebuild --wait)', self.cli,
                   'server', 'rebuild', '--wait', '--image', second.id,
                   server.id)
        self.action_time('rebuild with a port', server, 'rebuild',
                         'compute_rebuild_instance')
        server = self.assert_no_fault(server)
        self.assertEqual(second.id, server.image.id)
        self.wait_console(server, 'second-image-up')
        ports = list(self.conn.network.ports(device_id=server.id))
        self.assertEqual([port.id], [p.id for p in ports])
        self.assertEqual('ACTIVE', ports[0].status)

    # -- resize -------------------------------------------------------

    def test_resize_container_revert_then_confirm(self):
        image = self.container_image(RESIZE_CMD)
        server = self.create('resize', image=image.id, flavor='clear.tiny')
        text = self.wait_console(server, 'resize-report')
        self.assertIn('wrote-mark', text)
        self.assertIn('cpus: 1', text)
        size_before = _root_kib(text)

        def resize():
            self.cli('server', 'resize', '--wait', '--flavor', 'clear.small',
                     server.id)
            return self.wait_status(server, 'VERIFY_RESIZE')
        self.timed('container resize (resize --wait)', resize)
        self.action_time('container resize', server, 'resize',
                         'compute_finish_resize')
        # the resized server's console log starts afresh (its old one
        # stays with the original, in <uuid>_resize, until confirmed)
        last = self.wait_report(server, 'cpus: 2')
        self.assertGreater(_root_kib(last), size_before)

        # revert: back on the old flavor, with the data
        self.timed('resize revert (to ACTIVE)', self._revert, server)
        self.assertEqual('clear.tiny',
                         self.conn.compute.get_server(server).flavor.name)
        last = self.wait_report(server, 'cpus: 1')
        self.assertEqual(size_before, _root_kib(last))

        # and again, confirmed this time
        resize()
        self.timed('resize confirm (to ACTIVE)', self._confirm, server)
        server = self.assert_no_fault(server)
        self.assertEqual('clear.small', server.flavor.name)
        self.assertFalse(_resize_leftovers(self.instance_dir(server.id)))

    def wait_report(self, server, cpus, timeout=base.TIMEOUT):
        """The last boot's report, once it is a boot after the resize
        (it finds the mark) with ``cpus``."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.console(server)
            if 'found mark: before-resize' in text:
                last = text[text.rindex('found mark'):]
                if 'resize-report' in last and cpus in last:
                    return last
            if time.monotonic() > deadline:
                self.fail('no report with %s after the resize in the '
                          'console of %s:\n%s' % (cpus, server.name, text))
            time.sleep(1)

    def _revert(self, server):
        self.cli('server', 'resize', 'revert', server.id)
        return self.wait_status(server, 'ACTIVE')

    def _confirm(self, server):
        self.cli('server', 'resize', 'confirm', server.id)
        return self.wait_status(server, 'ACTIVE')


# Marks its root once; every boot reports what it sees: the mark, its
# vCPUs and the size of its root filesystem (the writable disk's).
RESIZE_CMD = (
    'mkdir -p /root; if [ -e /root/mark ]; then '
    'echo "found mark: $(cat /root/mark)"; else '
    'echo before-resize > /root/mark; busybox sync; echo wrote-mark; '
    'echo "found mark: none"; fi; '
    'echo "cpus: $(busybox nproc)"; '
    'echo "root-kib: $(busybox df -k / | busybox tail -1 | '
    'busybox awk \'{print $2}\')"; echo resize-report; exec sleep 3600')


def _root_kib(text):
    """The last ``root-kib:`` figure in ``text``."""
    lines = [line for line in text.splitlines()
             if line.startswith('root-kib: ')]
    return int(lines[-1].split()[1])


def _resize_leftovers(instance_dir):
    """What a confirmed resize must not leave: ``<dir>_resize``."""
    return os.path.exists(instance_dir.rstrip('/') + '_resize')
