"""Live migration between two compute hosts on this machine, real libvirtd
+ QEMU on both: host 1 is the tests' libvirtd, host 2 a second libvirtd +
virtlogd in a private mount namespace (nova_clear.deploy.second_libvirtd),
each host with its own instances path and image cache.  The calls Nova's
compute manager makes, in its order (nova_clear.live_migration)."""

import atexit
import contextlib
import os
import random
import re
import threading
import time

import libvirt
from testtools import content

from nova.compute import power_state
import nova.conf

from nova_clear.deploy import second_libvirtd
from tests.functional import base
from tests.functional import images

CONF = nova.conf.CONF

_HOST2 = []


def host2_root():
    """The second libvirtd of this test process, started once, stopped by
    PID when the process exits."""
    if not _HOST2:
        root = os.path.join(base.worker_dir(), 'host2')
        # incoming migrations of parallel test processes: their own ports
        low = 49400 + 64 * random.randrange(0, 60)
        second_libvirtd.start(root, migration_ports=(low, low + 63))
        atexit.register(second_libvirtd.stop, root)
        _HOST2.append(root)
    return _HOST2[0]


TICKER = ('busybox mkdir -p /root; echo mark-$$-before > /root/mark; sync; '
          'n=0; while :; do '
          'n=$((n + 1)); echo "tick $n $(cat /root/mark)"; sleep 0.2; done')
TICK = re.compile(r"tick (\d+) (mark-\S+)")


class Host:
    def __init__(self, name, tmp, uri, lm_uri):
        self.name = name
        self.instances = os.path.join(tmp, name, 'instances')
        self.cache = os.path.join(tmp, name, 'cache')
        self.uri = uri
        self.lm_uri = lm_uri
        self.drv = None


class TestLiveMigration(base.FunctionalTestCase):

    def setUp(self):
        super().setUp()
        root = host2_root()
        self.conf.config(my_ip='127.0.0.1')
        self.h1 = Host(CONF.host, self.tmp, 'qemu:///system',
                       second_libvirtd.uri(root))
        self.h2 = Host(CONF.host + '-2', self.tmp, second_libvirtd.uri(root),
                       second_libvirtd.peer_uri(root))
        for h in (self.h1, self.h2):
            with self.on(h):
                h.drv = self.make_driver()

    @contextlib.contextmanager
    def on(self, h):
        """CONF as host ``h``'s nova-compute has it."""
        self.conf.config(host=h.name, instances_path=h.instances)
        self.conf.config(group='clear', instances_path=h.instances,
                         image_cache_path=h.cache, connection_uri=h.uri,
                         live_migration_uri=h.lm_uri,
                         live_migration_inbound_addr='127.0.0.1')
        yield h.drv

    def spawn_on(self, h, image):
        inst = self.make_instance(image)
        inst.host = h.name
        with self.on(h) as drv:
            drv.spawn(self.context, inst, self.glance.image_meta(image),
                      [], None, {}, network_info=None)
        self.addCleanup(self._destroy_everywhere, inst)
        return inst

    def _destroy_everywhere(self, inst):
        for h in (self.h1, self.h2):
            with self.on(h) as drv:
                try:
                    drv.destroy(self.context, inst, None)
                except Exception:
                    pass

    def ticks(self, h, inst):
        with self.on(h) as drv:
            text = self.console(drv, inst)
        return [(int(n), mark) for n, mark in TICK.findall(text)]

    def wait_ticks(self, h, inst, above, timeout=base.READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = self.ticks(h, inst)
            if t and t[-1][0] > above:
                return t
            time.sleep(0.2)
        with self.on(h) as drv:
            self.fail('no tick above %d on %s:\n%s' % (
                above, h.name, self.console(drv, inst)[-2000:]))

    def migrate(self, inst, src, dst, during=None):
        """Nova's sequence; returns (result, seconds of live_migration)."""
        with self.on(dst) as drv:
            data = drv.check_can_live_migrate_destination(
                self.context, inst, {}, {}, block_migration=None)
        with self.on(src) as drv:
            data = drv.check_can_live_migrate_source(self.context, inst,
                                                     data)
            disk_info = drv.get_instance_disk_info(inst)
        with self.on(dst) as drv:
            data = drv.pre_live_migration(self.context, inst, None, [],
                                          disk_info, data)
        calls = []

        def post(ctx, instance, dest, block_migration, md):
            calls.append('post')

        def recover(ctx, instance, dest, md, migration_status='error'):
            calls.append(migration_status)
        if during:
            threading.Timer(0.3, during).start()
        with self.on(src) as drv:
            t0 = time.monotonic()
            drv.live_migration(self.context, inst, dst.name, post, recover,
                               True, data)
            took = time.monotonic() - t0
        self.assertEqual(1, len(calls), calls)
        if calls == ['post']:
            with self.on(src) as drv:
                drv.post_live_migration(self.context, inst, None, data)
                drv.post_live_migration_at_source(self.context, inst, [])
                drv.cleanup(self.context, inst, [], destroy_disks=True,
                            migrate_data=data)
            inst.host = dst.name
            with self.on(dst) as drv:
                drv.post_live_migration_at_destination(self.context, inst,
                                                       [], True)
        else:
            with self.on(dst) as drv:
                drv.rollback_live_migration_at_destination(
                    self.context, inst, [], None, True, data)
            with self.on(src) as drv:
                drv.rollback_live_migration_at_source(self.context, inst,
                                                      data)
        return calls[0], took

    def downtime(self, h, inst):
        """libvirt's figures of the completed migration (destination)."""
        conn = libvirt.open(h.uri)
        try:
            dom = conn.lookupByUUIDString(inst.uuid)
            return dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        except libvirt.libvirtError:
            return {}
        finally:
            conn.close()

    def label(self, h):
        return 'host1' if h is self.h1 else 'host2'

    def assert_left(self, h, inst):
        """Nothing of the instance is left on host ``h``."""
        conn = libvirt.open(h.uri)
        try:
            self.assertRaises(libvirt.libvirtError, conn.lookupByUUIDString,
                              inst.uuid)
        finally:
            conn.close()
        self.assertFalse(os.path.exists(os.path.join(h.instances,
                                                     inst.uuid)))

    def assert_runs_on(self, h, inst):
        with self.on(h) as drv:
            self.assertEqual(power_state.RUNNING, drv.get_info(inst).state)
            self.assertIn(inst.uuid, drv.list_instance_uuids())

    def _round_trip(self, image):
        inst = self.spawn_on(self.h1, image)
        before = self.wait_ticks(self.h1, inst, 3)
        mark = before[-1][1]
        report = []
        for src, dst in ((self.h1, self.h2), (self.h2, self.h1)):
            last = self.ticks(src, inst)[-1][0]
            result, took = self.migrate(inst, src, dst)
            self.assertEqual('post', result)
            stats = self.downtime(dst, inst)
            self.assert_left(src, inst)
            self.assert_runs_on(dst, inst)
            after = self.wait_ticks(dst, inst, last + 3)
            numbers = [n for n, _m in after]
            # the console log continues: history first, then ticks at dst
            self.assertEqual(list(range(numbers[0], numbers[-1] + 1)),
                             numbers)
            self.assertEqual({mark}, {m for _n, m in after})
            report.append('%s->%s: %.2fs (libvirt %s ms, downtime %s ms)' % (
                self.label(src), self.label(dst), took,
                stats.get('time_elapsed'), stats.get('downtime')))
        self.addDetail('migrations', content.text_content('\n'.join(report)))
        out = os.environ.get('NOVA_CLEAR_LM_REPORT')
        if out:
            with open(out, 'a') as f:
                f.write('%s: %s\n' % (self.id(), '; '.join(report)))
        with self.on(self.h1) as drv:
            drv.destroy(self.context, inst, None)
        self.assert_left(self.h1, inst)
        self.assert_left(self.h2, inst)

    def test_container_round_trip(self):
        self._round_trip(self.container_image(TICKER))

    def test_disk_image_round_trip(self):
        self._round_trip(self.disk_image())

    def test_abort_leaves_it_on_the_source(self):
        inst = self.spawn_on(self.h1, self.container_image(TICKER))
        last = self.wait_ticks(self.h1, inst, 3)[-1][0]

        def abort():
            with contextlib.suppress(Exception):
                self.h1.drv.live_migration_abort(inst)
        # a slow migration to abort: the guest dirties memory meanwhile
        conn = libvirt.open(self.h1.uri)
        dom = conn.lookupByUUIDString(inst.uuid)
        result, took = self.migrate(inst, self.h1, self.h2, during=(
            lambda: (dom.migrateSetMaxSpeed(1, 0), abort())))
        conn.close()
        self.assertEqual('cancelled', result)
        self.assert_left(self.h2, inst)
        self.assert_runs_on(self.h1, inst)
        self.wait_ticks(self.h1, inst, last + 5)

    def disk_image(self):
        return self.glance.add(
            images.disk_image('fs'), 'raw',
            properties={'os_command_line':
                        'init=/bin/sh -- -c "%s"' % TICKER.replace(
                            'busybox ', '').replace('"', '')})

    def test_paused_container_stays_paused(self):
        self._paused(self.container_image(TICKER))

    def test_paused_disk_image_stays_paused(self):
        self._paused(self.disk_image())

    def _paused(self, image):
        """A guest paused (Nova's pause) before its live migration arrives
        paused, its memory and disk intact, and runs on when unpaused
        (tempest's test_live_block_migration_paused)."""
        inst = self.spawn_on(self.h1, image)
        before = self.wait_ticks(self.h1, inst, 3)
        mark = before[-1][1]
        with self.on(self.h1) as drv:
            drv.pause(inst)
            self.assertEqual(power_state.PAUSED, drv.get_info(inst).state)
        time.sleep(1)
        last = self.ticks(self.h1, inst)[-1][0]
        result, took = self.migrate(inst, self.h1, self.h2)
        self.assertEqual('post', result)
        self.assert_left(self.h1, inst)
        with self.on(self.h2) as drv:
            self.assertEqual(power_state.PAUSED, drv.get_info(inst).state)
            self.assertIn(inst.uuid, drv.list_instance_uuids())
        # paused at the destination: no tick there
        time.sleep(1)
        paused_at = self.ticks(self.h2, inst)[-1][0]
        time.sleep(1)
        self.assertEqual(paused_at, self.ticks(self.h2, inst)[-1][0])
        with self.on(self.h2) as drv:
            drv.unpause(inst)
            self.assertEqual(power_state.RUNNING, drv.get_info(inst).state)
        after = self.wait_ticks(self.h2, inst, paused_at + 3)
        numbers = [n for n, _m in after]
        self.assertEqual(list(range(numbers[0], numbers[-1] + 1)), numbers)
        self.assertLessEqual(numbers[0], last)
        self.assertEqual({mark}, {m for _n, m in after})
        self.addDetail('migration', content.text_content(
            'paused host1->host2: %.2fs; ticks %d at the pause, %d on '
            'arrival' % (took, last, paused_at)))

    def test_abort_leaves_a_paused_guest_paused(self):
        inst = self.spawn_on(self.h1, self.container_image(TICKER))
        self.wait_ticks(self.h1, inst, 3)
        with self.on(self.h1) as drv:
            drv.pause(inst)

        def abort():
            with contextlib.suppress(Exception):
                self.h1.drv.live_migration_abort(inst)
        conn = libvirt.open(self.h1.uri)
        dom = conn.lookupByUUIDString(inst.uuid)
        result, took = self.migrate(inst, self.h1, self.h2, during=(
            lambda: (dom.migrateSetMaxSpeed(1, 0), abort())))
        conn.close()
        self.assertEqual('cancelled', result)
        self.assert_left(self.h2, inst)
        with self.on(self.h1) as drv:
            self.assertEqual(power_state.PAUSED, drv.get_info(inst).state)
            last = self.ticks(self.h1, inst)[-1][0]
            drv.unpause(inst)
        self.wait_ticks(self.h1, inst, last + 3)
