"""Cold migration, resize and evacuate between two compute hosts on this
machine, real libvirtd + QEMU on both (host 2: a second libvirtd in a
private mount namespace, as tests/functional/test_live_migration.py), each
host with its own instances path and image cache.  The calls Nova's
compute manager makes, in its order (nova_clear.migration,
nova_clear.migration_hosts)."""

import os
import re
import time
from unittest import mock

import libvirt
from testtools import content

from nova.compute import power_state
from nova.compute import task_states
import nova.conf
from nova import objects

from tests.functional import base
from tests.functional import images
from tests.functional import test_live_migration as lm
from tests.functional import test_resize

CONF = nova.conf.CONF

# A disk image's /bin/sh as init: counts its boots and keeps a mark from
# its first one on its (overlay) disk.  Short: Nova keeps image properties
# in the instance's system metadata cut to 255 characters, and the revert
# boots from those (ImageMeta.from_instance).
DISK_CMD = ('n=$(cat /n || echo 0); n=$((n+1)); echo $n >/n; [ -f /m ] || '
            'cat /proc/sys/kernel/random/uuid >/m; sync; while :; do echo '
            'report boot=$n mark=$(cat /m) cpus=$(grep -c ^proc '
            '/proc/cpuinfo) end; sleep 1; done')
DISK_REPORT = re.compile(r'report boot=(\d+) mark=(\S+) cpus=(\d+) end')


class TestColdMigrationBetweenHosts(base.FunctionalTestCase):

    def console(self, drv, instance):
        return super().console(drv, instance).replace('\r', '')

    def setUp(self):
        super().setUp()
        root = lm.host2_root()
        self.conf.config(my_ip='127.0.0.1')
        self.h1 = lm.Host(CONF.host, self.tmp, 'qemu:///system',
                          lm.second_libvirtd.uri(root))
        self.h2 = lm.Host(CONF.host + '-2', self.tmp,
                          lm.second_libvirtd.uri(root),
                          lm.second_libvirtd.peer_uri(root))
        for h in (self.h1, self.h2):
            with self.on(h):
                h.drv = self.make_driver()
        self.timings = []

    on = lm.TestLiveMigration.on
    _destroy_everywhere = lm.TestLiveMigration._destroy_everywhere
    spawn_on = lm.TestLiveMigration.spawn_on

    def label(self, h):
        return 'host1' if h is self.h1 else 'host2'

    def note(self, what, seconds):
        self.timings.append('%s %.2fs' % (what, seconds))

    def tearDown(self):
        report = '; '.join(self.timings)
        self.addDetail('timings', content.text_content(report))
        out = os.environ.get('NOVA_CLEAR_MIGRATION_REPORT')
        if out and report:
            with open(out, 'a') as f:
                f.write('%s: %s\n' % (self.id(), report))
        super().tearDown()

    # -- Nova's sequence --------------------------------------------------
    def migrate(self, inst, src, dst, flavor, shutdown_timeout=30):
        """resize_instance at ``src``, finish_resize at ``dst``."""
        old = inst.flavor
        inst.task_state = task_states.RESIZE_MIGRATING
        t0 = time.monotonic()
        with self.on(src) as drv:
            info = drv.migrate_disk_and_power_off(
                self.context, inst, CONF.my_ip, flavor, [], None,
                shutdown_timeout, 2)
        t1 = time.monotonic()
        inst.host = dst.name
        inst.old_flavor, inst.new_flavor, inst.flavor = old, flavor, flavor
        inst.task_state = task_states.RESIZE_FINISH
        with self.on(dst) as drv:
            drv.finish_migration(
                self.context, mock.sentinel.migration, inst, info, [],
                self.glance.image_meta(inst.image_ref),
                old.root_gb != flavor.root_gb, {}, None, power_on=True)
        inst.task_state = None
        self.note('%s->%s power off + copy' % (self.label(src),
                                               self.label(dst)), t1 - t0)
        self.note('finish at %s' % self.label(dst), time.monotonic() - t1)
        self.t_started = time.monotonic()

    def confirm(self, inst, src):
        t0 = time.monotonic()
        with self.on(src) as drv:
            drv.confirm_migration(self.context, mock.sentinel.migration,
                                  inst, [])
        self.note('confirm', time.monotonic() - t0)

    def revert(self, inst, src, dst):
        """revert_resize at ``dst``, finish_revert_resize at ``src``."""
        t0 = time.monotonic()
        inst.task_state = task_states.RESIZE_REVERTING
        with self.on(dst) as drv:
            drv.destroy(self.context, inst, [], None, True)
        inst.host = src.name
        inst.flavor = inst.old_flavor
        with self.on(src) as drv:
            drv.finish_revert_migration(self.context, inst, [],
                                        mock.sentinel.migration, None, True)
        inst.task_state = None
        self.note('revert', time.monotonic() - t0)
        self.t_started = time.monotonic()

    # -- what the guest says ----------------------------------------------
    def report(self, h, inst, boot, pattern=test_resize.REPORT):
        deadline = time.monotonic() + 10
        with self.on(h) as drv:
            text = self.wait_console(drv, inst, 'report boot=%d ' % boot)
            while True:
                # the whole line (the console may hold half of it yet)
                found = [m for m in pattern.finditer(text)
                         if m.group(1) == str(boot)]
                if found or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
                text = self.console(drv, inst)
        self.assertTrue(found, text[-2000:])
        return found[-1].groups()

    def container_report(self, h, inst, boot):
        _b, mark, note, cpus, mem, rootkb = self.report(h, inst, boot)
        return {'mark': mark, 'note': note, 'cpus': int(cpus),
                'mem_kb': int(mem), 'root_kb': int(rootkb)}

    def disk_report(self, h, inst, boot):
        _b, mark, cpus = self.report(h, inst, boot, DISK_REPORT)
        return {'mark': mark, 'cpus': int(cpus)}

    # -- where things are -------------------------------------------------
    def domain(self, h, inst):
        conn = libvirt.open(h.uri)
        try:
            try:
                return conn.lookupByUUIDString(inst.uuid).XMLDesc()
            except libvirt.libvirtError:
                return None
        finally:
            conn.close()

    def dirs(self, h, inst):
        if not os.path.isdir(h.instances):
            return []
        return sorted(n for n in os.listdir(h.instances)
                      if n.startswith(inst.uuid))

    def assert_nothing_on(self, h, inst):
        self.assertIsNone(self.domain(h, inst))
        self.assertEqual([], self.dirs(h, inst))

    def assert_runs_on(self, h, inst):
        with self.on(h) as drv:
            self.assertEqual(power_state.RUNNING, drv.get_info(inst).state)
            self.assertIn(inst.uuid, drv.list_instance_uuids())
        xml = self.domain(h, inst)
        self.assertIn(os.path.join(h.instances, inst.uuid), xml)
        self.assertIn(h.cache, xml)

    def disk_image(self):
        return self.glance.add(
            images.disk_image('fs'), 'raw',
            properties={'os_command_line':
                        'init=/bin/sh -- -c "%s"' % DISK_CMD})

    def flavor(self, name, vcpus, memory_mb, root_gb):
        return objects.Flavor(name=name, vcpus=vcpus, memory_mb=memory_mb,
                              root_gb=root_gb, ephemeral_gb=0, swap=0,
                              extra_specs={})

    def up(self, what):
        self.note('%s: to the workload' % what,
                  time.monotonic() - self.t_started)

    # -- the tests --------------------------------------------------------
    def test_container_migrate_then_confirm(self):
        inst = self.spawn_on(self.h1, self.container_image(
            test_resize.REPORTING_CMD))
        first = self.container_report(self.h1, inst, 1)
        self.migrate(inst, self.h1, self.h2, inst.flavor)
        moved = self.container_report(self.h2, inst, 2)
        self.up('host2')
        self.assertEqual(first['mark'], moved['mark'])
        self.assert_runs_on(self.h2, inst)
        # the root filesystem is host 2's, built there from the image
        with open(os.path.join(self.h2.instances, inst.uuid,
                               'rootfs')) as f:
            self.assertTrue(f.read().startswith(self.h2.cache))
        # host 1 keeps the stopped original until the confirm
        self.assertEqual([inst.uuid + '_resize'], self.dirs(self.h1, inst))
        self.assertIsNotNone(self.domain(self.h1, inst))
        self.confirm(inst, self.h1)
        self.assert_nothing_on(self.h1, inst)
        self.assert_runs_on(self.h2, inst)
        with self.on(self.h2) as drv:
            drv.destroy(self.context, inst, [])
        self.assert_nothing_on(self.h2, inst)

    def test_disk_image_migrate_then_confirm(self):
        inst = self.spawn_on(self.h1, self.disk_image())
        first = self.disk_report(self.h1, inst, 1)
        self.migrate(inst, self.h1, self.h2, inst.flavor, shutdown_timeout=3)
        moved = self.disk_report(self.h2, inst, 2)
        self.up('host2')
        self.assertEqual(first['mark'], moved['mark'])
        self.assert_runs_on(self.h2, inst)
        self.confirm(inst, self.h1)
        self.assert_nothing_on(self.h1, inst)
        self.assert_runs_on(self.h2, inst)

    def test_container_resize_across_hosts_then_revert(self):
        inst = self.spawn_on(self.h1, self.container_image(
            test_resize.REPORTING_CMD))
        first = self.container_report(self.h1, inst, 1)
        self.migrate(inst, self.h1, self.h2,
                     self.flavor('bigger', 2, 192, 2))
        resized = self.container_report(self.h2, inst, 2)
        self.up('host2')
        self.assertEqual(('from-first-boot', 'from-resized-boot', 2),
                         (resized['mark'], resized['note'],
                          resized['cpus']))
        self.assertGreater(resized['root_kb'], first['root_kb'] * 1.8)
        self.assertGreater(resized['mem_kb'], first['mem_kb'] + 50 * 1024)
        self.assert_runs_on(self.h2, inst)
        self.revert(inst, self.h1, self.h2)
        original = self.container_report(self.h1, inst, 2)
        self.up('host1 after the revert')
        # as it was at the resize: what the resized guest wrote is gone
        self.assertEqual(('from-first-boot', '', 1, first['root_kb']),
                         (original['mark'], original['note'],
                          original['cpus'], original['root_kb']))
        self.assert_nothing_on(self.h2, inst)
        self.assert_runs_on(self.h1, inst)
        self.assertEqual([inst.uuid], self.dirs(self.h1, inst))

    def test_disk_image_resize_across_hosts_then_revert(self):
        inst = self.spawn_on(self.h1, self.disk_image())
        first = self.disk_report(self.h1, inst, 1)
        self.migrate(inst, self.h1, self.h2,
                     self.flavor('bigger', 2, 192, 2), shutdown_timeout=3)
        resized = self.disk_report(self.h2, inst, 2)
        self.up('host2')
        self.assertEqual((first['mark'], 2),
                         (resized['mark'], resized['cpus']))
        self.revert(inst, self.h1, self.h2)
        original = self.disk_report(self.h1, inst, 2)
        self.up('host1 after the revert')
        self.assertEqual((first['mark'], 1),
                         (original['mark'], original['cpus']))
        self.assert_nothing_on(self.h2, inst)
        self.assert_runs_on(self.h1, inst)

    def _evacuate(self, image, report):
        inst = self.spawn_on(self.h1, image)
        first = report(self.h1, inst, 1)
        # host 1 fails: its QEMU dies with it, the domain and files stay
        conn = libvirt.open(self.h1.uri)
        try:
            conn.lookupByUUIDString(inst.uuid).destroy()
        finally:
            conn.close()
        # Nova's rebuild_instance(evacuate=True) on host 2: the driver's
        # rebuild defers to the default, which spawns there
        inst.host = self.h2.name
        inst.task_state = task_states.REBUILD_SPAWNING
        t0 = time.monotonic()
        with self.on(self.h2) as drv:
            self.assertRaises(NotImplementedError, drv.rebuild,
                              self.context, inst,
                              self.glance.image_meta(inst.image_ref), [],
                              None, {}, [], None, None, network_info=[],
                              evacuate=True)
            drv.spawn(self.context, inst,
                      self.glance.image_meta(inst.image_ref), [], None, {},
                      network_info=[])
        inst.task_state = None
        self.note('evacuate spawn at host2', time.monotonic() - t0)
        self.t_started = t0
        fresh = report(self.h2, inst, 1)
        self.up('host2')
        self.assert_runs_on(self.h2, inst)
        # host 1's nova-compute comes back: _destroy_evacuated_instances
        t0 = time.monotonic()
        with self.on(self.h1) as drv:
            self.assertIn(inst.uuid, drv.list_instance_uuids())
            drv.destroy(self.context, inst, [], {}, True)
            self.assertNotIn(inst.uuid, drv.list_instance_uuids())
        self.note('source cleanup', time.monotonic() - t0)
        self.assert_nothing_on(self.h1, inst)
        self.assert_runs_on(self.h2, inst)
        return first, fresh

    def test_evacuate_container(self):
        first, fresh = self._evacuate(self.container_image(
            test_resize.REPORTING_CMD), self.container_report)
        self.assertEqual(first['mark'], fresh['mark'])   # a first boot

    def test_evacuate_disk_image(self):
        first, fresh = self._evacuate(self.disk_image(), self.disk_report)
        # new disks from Glance: not the failed host's
        self.assertNotEqual(first['mark'], fresh['mark'])
