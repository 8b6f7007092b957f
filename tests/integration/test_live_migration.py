"""Live migration through Nova between the all-in-one's two compute hosts
(``tools/allinone start --computes 2``; skipped with one host).

A container serving HTTP on the provider network is live-migrated with
``openstack server migrate --live-migration`` to the second host and back
with openstacksdk's ``live_migrate_server``, while a client in the
provider namespace polls it every 0.1 s: at most ``MAX_FAILED`` requests
may fail.  Its console (a tick a second) continues across both moves, and
nothing of it is left on the host it left (libvirt domain, instance
directory, macvtap device).  An abort (``openstack server migration
abort``) of a migration slowed by a libvirt speed limit leaves it running
on the source.  Timings and request counts go to the ``live-migration``
detail and ``$AIO_HOME/logs/live-migration.jsonl``.
"""

import re
import subprocess
import sys
import threading
import time

import libvirt

from tests.integration import base
from tests.integration import two_hosts

MAX_FAILED = 3
SERVER_CMD = (
    'mkdir -p /tmp/www; echo "page from $(hostname)" > /tmp/www/index.html;'
    ' (i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 1; done) &'
    ' echo serving; exec /bin/busybox httpd -f -p 80 -h /tmp/www')
# runs in the provider namespace: one line per request, until killed
POLLER = r'''
import sys, time, urllib.request
url = sys.argv[1]
while True:
    t = time.time()
    try:
        urllib.request.urlopen(url, timeout=1).read()
        ok = 'ok'
    except Exception as e:
        ok = 'fail'
    print('%s %.3f %.3f' % (ok, t, time.time() - t), flush=True)
    time.sleep(max(0, 0.1 - (time.time() - t)))
'''


class Poller:
    """The HTTP client in the provider namespace."""

    def __init__(self, netns, url):
        self.results = []
        self.proc = subprocess.Popen(
            ['ip', 'netns', 'exec', netns, sys.executable, '-c', POLLER,
             url], stdout=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            ok, t, dt = line.split()
            self.results.append((ok == 'ok', float(t), float(dt)))

    def mark(self):
        return len(self.results)

    def failed_since(self, mark):
        return sum(1 for ok, _t, _dt in self.results[mark:] if not ok)

    def max_gap_since(self, mark):
        """The longest time between two answered requests (their ends),
        in seconds: the service's outage as this client saw it."""
        ends = [t + dt for ok, t, dt in self.results[mark:] if ok]
        return round(max((b - a for a, b in zip(ends, ends[1:])),
                         default=0), 3)

    def stop(self):
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        self.proc.wait(10)
        self.thread.join(5)


class LiveMigrationTest(two_hosts.TwoHostsTestCase):

    def setUp(self):
        super().setUp()
        self.report = self.recorded_figures('live-migration.jsonl', 'report')

    # -- helpers -------------------------------------------------------

    def boot(self, tag, host):
        return self.boot_on(tag, host, SERVER_CMD, 'serving')

    def ticks(self, server):
        return [int(n) for n in re.findall(r'^tick (\d+)\s*$',
                                           self.console(server), re.M)]

    def assert_ticks_continue(self, server, before):
        """The console shows every tick from the first on, and more than
        ``before`` of them."""
        deadline = time.monotonic() + 30
        while True:
            ticks = self.ticks(server)
            if ticks and ticks[-1] > before + 2:
                break
            if time.monotonic() > deadline:
                self.fail('no new ticks on the console after %d: %s'
                          % (before, ticks[-5:]))
            time.sleep(0.5)
        first = ticks[0]
        self.assertEqual(list(range(first, ticks[-1] + 1)), ticks,
                         'ticks missing or repeated on the console')
        return ticks[-1]

    def migrations(self, server):
        return list(self.conn.compute.server_migrations(server))

    # -- tests ---------------------------------------------------------

    def test_spread_and_target(self):
        """Placement has a resource provider per host; a server with no
        target goes to the host the first one is not on (one after the
        other: two requests at once may both see the same free host)."""
        names = {rp.name for rp in self.conn.placement.resource_providers()}
        self.assertTrue({self.host1, self.host2} <= names, names)
        hosts = {self.create('spread-%d' % i).compute_host
                 for i in range(2)}
        self.assertEqual({self.host1, self.host2}, hosts)

    def test_live_migration_there_and_back(self):
        server = self.boot('lm', self.host1)
        url = 'http://%s/' % self.address(server)
        self.http_ready(url)
        poller = Poller(self.net['netns'], url)
        self.addCleanup(poller.stop)
        time.sleep(2)
        tick = self.assert_ticks_continue(server, 0)

        # there, with the CLI
        mark = poller.mark()
        t0 = time.monotonic()
        self.cli('--os-compute-api-version', '2.90', 'server', 'migrate',
                 '--live-migration', '--host',
                 self.host2, '--wait', server.id)
        server = self.wait_host(server, self.host2)
        self.report['there_s'] = round(time.monotonic() - t0, 2)
        time.sleep(2)
        self.report['there_failed'] = poller.failed_since(mark)
        self.report['there_requests'] = poller.mark() - mark
        self.report['there_max_gap_s'] = poller.max_gap_since(mark)
        self.assert_on(server, self.host2)
        tick = self.assert_ticks_continue(server, tick)

        # and back, with openstacksdk
        mark = poller.mark()
        t0 = time.monotonic()
        self.conn.compute.live_migrate_server(server, host=self.host1,
                                              block_migration='auto')
        server = self.wait_host(server, self.host1)
        self.report['back_s'] = round(time.monotonic() - t0, 2)
        time.sleep(2)
        self.report['back_failed'] = poller.failed_since(mark)
        self.report['back_requests'] = poller.mark() - mark
        self.report['back_max_gap_s'] = poller.max_gap_since(mark)
        self.assert_on(server, self.host1)
        self.assert_ticks_continue(server, tick)
        self.report['migrations'] = [
            (m.source_compute, m.dest_compute, m.status)
            for m in self.migrations_all(server)]
        poller.stop()
        self.assertLessEqual(self.report['there_failed'], MAX_FAILED,
                             self.report)
        self.assertLessEqual(self.report['back_failed'], MAX_FAILED,
                             self.report)

    def test_abort(self):
        server = self.boot('lm-abort', self.host1)
        # 1 MiB/s: the 128 MiB of RAM take minutes
        conn = libvirt.open('qemu:///system')
        try:
            conn.lookupByUUIDString(server.id).migrateSetMaxSpeed(1)
        finally:
            conn.close()
        self.conn.compute.live_migrate_server(server, host=self.host2,
                                              block_migration='auto')
        deadline = time.monotonic() + base.TIMEOUT
        while True:
            running = [m for m in self.migrations(server)
                       if m.status == 'running']
            # the disks are mirrored first (NBD), then the memory: either
            # in progress (libvirt's speed limit applies to both)
            if running and ((running[0].memory_processed_bytes or 0) +
                            (running[0].disk_processed_bytes or 0)) > 0:
                break
            if time.monotonic() > deadline:
                self.fail('no running migration of %s: %s' % (
                    server.name, [(m.status, m.memory_processed_bytes)
                                  for m in self.migrations(server)]))
            time.sleep(0.5)
        self.report['progress_at_abort'] = {
            'memory_processed': running[0].memory_processed_bytes,
            'memory_total': running[0].memory_total_bytes,
            'disk_processed': running[0].disk_processed_bytes,
            'disk_total': running[0].disk_total_bytes}
        t0 = time.monotonic()
        self.cli('--os-compute-api-version', '2.90', 'server', 'migration',
                 'abort', server.id, str(running[0].id))
        deadline = time.monotonic() + base.TIMEOUT
        while True:
            m = [m for m in self.migrations_all(server)
                 if m.id == running[0].id]
            if m and m[0].status in ('cancelled', 'error', 'failed'):
                break
            if time.monotonic() > deadline:
                self.fail('migration %s not cancelled: %s' % (
                    running[0].id, m and m[0].status))
            time.sleep(0.5)
        self.report['abort_s'] = round(time.monotonic() - t0, 2)
        self.assertEqual('cancelled', m[0].status)
        server = self.wait_host(server, self.host1)
        self.assert_on(server, self.host1)
        url = 'http://%s/' % self.address(server)
        self.http_ready(url)
        self.wait_console(server, 'tick', count=1)

    # -- more helpers --------------------------------------------------

    def migrations_all(self, server):
        return [m for m in self.conn.compute.migrations(
            instance_uuid=server.id)]

    def http_ready(self, url, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            proc = subprocess.run(
                ['ip', 'netns', 'exec', self.net['netns'], 'busybox',
                 'wget', '-q', '-O', '-', url], capture_output=True,
                text=True, timeout=30)
            if proc.returncode == 0 and 'page from' in proc.stdout:
                return
            if time.monotonic() > deadline:
                self.fail('%s does not answer from %s' % (
                    url, self.net['netns']))
            time.sleep(0.5)
