"""Cold migration, resize and evacuate through Nova between the
all-in-one's two compute hosts (``tools/allinone start --computes 2``;
skipped with one host).

The servers are busybox containers on ``clear-net`` whose every boot
prints a report: the boot number (a counter on their writable disk), the
mark written on the first boot (a random UUID), their vCPUs and the size
of their root filesystem.

* cold migration (``openstack server migrate --host``) to the other host,
  ``VERIFY_RESIZE`` there (the guest booted again with its disk: boot 2,
  same mark), then confirm: it runs on the other host, and nothing of it
  is left on the source (domain, instance directory or ``_resize`` one,
  macvtap device on the source's provider interface);
* the same, reverted: back on the source as it was (the original console
  log with the new boot appended, the same mark), nothing on the
  destination;
* resize to ``clear.small`` (2 vCPUs, 2 GB) with the source's compute
  service disabled, so that the scheduler takes the other host, then
  confirm: more vCPUs and a larger root filesystem on the other host;
* evacuate: host 2's nova-compute killed (by the PID in its PID file),
  forced down, ``openstack server evacuate``: the server ACTIVE on host 1
  (fresh disks from Glance: boot 1, a new mark); then host 2's
  nova-compute starts again (``tools/allinone start --computes 2``) and
  Nova's destroy-evacuated path removes the old domain, files and
  macvtap device from host 2.

Timings go to the ``timings`` detail and
``$AIO_HOME/logs/migration-hosts.jsonl``.
"""

import os
import re
import signal
import subprocess
import time

import libvirt

from tests.integration import base
from tests.integration import two_hosts

REPORT_CMD = (
    'mkdir -p /root; b=$(( $(cat /root/boots 2>/dev/null || echo 0) + 1 ));'
    ' echo $b > /root/boots;'
    ' [ -e /root/mark ] || cat /proc/sys/kernel/random/uuid > /root/mark;'
    ' busybox sync;'
    ' echo "boot $b mark $(cat /root/mark) cpus $(busybox nproc) root-kib'
    ' $(busybox df -k / | busybox tail -1 | busybox awk \'{print $2}\')";'
    ' echo booted; exec sleep 3600')
REPORT = re.compile(r'^boot (\d+) mark (\S+) cpus (\d+) root-kib (\d+)\s*$',
                    re.M)
RESTART_TIMEOUT = 900


class MigrationHostsTest(two_hosts.TwoHostsTestCase):

    def setUp(self):
        super().setUp()
        self.timings = self.recorded_figures('migration-hosts.jsonl',
                                             'timings')

    # -- helpers -------------------------------------------------------

    def boot(self, tag, host):
        server = self.boot_on(tag, host, REPORT_CMD, 'booted')
        first = self.reports(server)[-1]
        self.assertEqual(1, first['boot'])
        return server, first

    def reports(self, server):
        return [{'boot': int(b), 'mark': m, 'cpus': int(c),
                 'root_kib': int(k)}
                for b, m, c, k in REPORT.findall(self.console(server))]

    def wait_boot(self, server, boot, timeout=base.TIMEOUT):
        """The last report once it is of boot number ``boot``."""
        deadline = time.monotonic() + timeout
        while True:
            reports = self.reports(server)
            if reports and reports[-1]['boot'] == boot:
                return reports[-1]
            if time.monotonic() > deadline:
                self.fail('no report of boot %d in the console of %s:\n%s'
                          % (boot, server.name,
                             self.console(server)[-2000:]))
            time.sleep(0.5)

    def timed(self, what, fn, *args):
        t0 = time.monotonic()
        result = fn(*args)
        self.timings[what] = round(time.monotonic() - t0, 2)
        return result

    def migrate(self, server, host):
        """Cold migration to ``host``, until VERIFY_RESIZE there."""
        self.cli('--os-compute-api-version', '2.56', 'server', 'migrate',
                 '--host', host, '--wait', server.id)
        return self.wait_host(server, host, 'VERIFY_RESIZE')

    def assert_stopped_on(self, host, server):
        """During VERIFY_RESIZE: the source keeps the stopped domain and
        ``<uuid>_resize`` (what a revert boots)."""
        self.assertEqual(libvirt.VIR_DOMAIN_SHUTOFF,
                         self.domain_state(host, server.id))
        path = self.host_side(host)[1]
        self.assertTrue(os.path.isdir(os.path.join(path,
                                                   server.id + '_resize')))

    def service_set(self, host, *flags):
        self.cli('--os-compute-api-version', '2.11', 'compute', 'service',
                 'set', *(list(flags) + [host, 'nova-compute']))

    # -- tests ---------------------------------------------------------

    def test_cold_migration_confirm(self):
        server, first = self.boot('cold', self.host1)
        server = self.timed('migrate (to VERIFY_RESIZE)', self.migrate,
                            server, self.host2)
        self.assert_stopped_on(self.host1, server)
        report = self.wait_boot(server, 2)
        self.assertEqual(first['mark'], report['mark'])
        self.timed('confirm (to ACTIVE)', lambda: (
            self.cli('server', 'resize', 'confirm', server.id),
            self.wait_host(server, self.host2)))
        self.assert_on(server, self.host2)
        # still its disk, still running there
        self.assertEqual(report, self.reports(server)[-1])
        self.assertEqual('ACTIVE', self.conn.compute.get_server(
            server.id).status)

    def test_cold_migration_revert(self):
        server, first = self.boot('cold-revert', self.host1)
        server = self.timed('migrate (to VERIFY_RESIZE)', self.migrate,
                            server, self.host2)
        report = self.wait_boot(server, 2)
        self.assertEqual(first['mark'], report['mark'])
        self.timed('revert (to ACTIVE)', lambda: (
            self.cli('server', 'resize', 'revert', server.id),
            self.wait_host(server, self.host1)))
        self.assert_on(server, self.host1)
        # the original's console log with the boot after the revert: the
        # disk as it was at the migration (one boot before), its mark
        self.wait_boot(server, 2)
        reports = self.reports(server)
        self.assertEqual([1, 2], [r['boot'] for r in reports])
        self.assertEqual({first['mark']}, {r['mark'] for r in reports})

    def test_resize_to_the_other_host(self):
        server, first = self.boot('resize', self.host1)
        # the scheduler may keep a resize on its host (the all-in-one
        # allows it): host 1 disabled meanwhile
        self.service_set(self.host1, '--disable', '--disable-reason',
                         'test_resize_to_the_other_host')
        self.addCleanup(self.service_set, self.host1, '--enable')

        def resize():
            self.cli('server', 'resize', '--flavor', 'clear.small',
                     '--wait', server.id)
            return self.wait_host(server, self.host2, 'VERIFY_RESIZE')
        server = self.timed('resize (to VERIFY_RESIZE)', resize)
        self.service_set(self.host1, '--enable')
        self.assert_stopped_on(self.host1, server)
        report = self.wait_boot(server, 2)
        self.assertEqual(first['mark'], report['mark'])
        self.assertEqual(2, report['cpus'])
        self.assertGreater(report['root_kib'], first['root_kib'])
        self.timed('confirm (to ACTIVE)', lambda: (
            self.cli('server', 'resize', 'confirm', server.id),
            self.wait_host(server, self.host2)))
        server = self.conn.compute.get_server(server.id)
        self.assertEqual('clear.small', server.flavor.name)
        self.assert_on(server, self.host2)

    def test_evacuate_then_the_failed_host_cleans_up(self):
        server, first = self.boot('evacuate', self.host2)
        mac = self.mac(server)
        pid = self.pid_of('nova-compute-2')
        self.assertIsNotNone(pid, 'nova-compute-2 does not run')
        # whatever happens, host 2 comes back (the later tests need it)
        self.addCleanup(self._host2_back)

        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.pid_of('nova-compute-2'):
            if time.monotonic() > deadline:
                self.fail('nova-compute-2 (pid %d) still runs' % pid)
            time.sleep(0.2)
        self.service_set(self.host2, '--down')
        self.assertTrue(self.compute_service(self.host2).is_forced_down)

        self.cli('--os-compute-api-version', '2.29', 'server', 'evacuate',
                 '--host', self.host1, server.id)
        server = self.wait_host(server, self.host1)
        self.timings['evacuate (kill to ACTIVE on host 1)'] = round(
            time.monotonic() - t0, 2)
        report = self.wait_boot(server, 1)
        # rebuilt from the image: fresh disks, a new mark
        self.assertNotEqual(first['mark'], report['mark'])
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING,
                         self.domain_state(self.host1, server.id))
        # host 2 (its libvirtd still up) still runs the old guest
        self.assertEqual(['domain', 'instance directory %s' % server.id,
                          'macvtap %s on %s' % (
                              mac, self.host2_state['physical_interface'])],
                         self.left_on(self.host2, server.id, mac))

        # host 2 back: its nova-compute destroys the evacuated instance
        self.service_set(self.host2, '--up')
        t0 = time.monotonic()
        self._restart_host2()
        self.timings['tools/allinone start --computes 2'] = round(
            time.monotonic() - t0, 2)
        self.assert_nothing_on(self.host2, server, timeout=60, mac=mac)
        self.timings['host 2 back to cleaned up'] = round(
            time.monotonic() - t0, 2)
        self.assert_on(server, self.host1)
        self.assertFalse(self.compute_service(self.host2).is_forced_down)
        self.assertEqual('up', self.compute_service(self.host2).state)
        evacuations = [m for m in self.conn.compute.migrations(
            instance_uuid=server.id) if m.migration_type == 'evacuation']
        self.assertEqual(['completed'], [m.status for m in evacuations])
        # and it still runs on host 1
        self.assertEqual(report, self.reports(server)[-1])

    def _restart_host2(self):
        proc = subprocess.run(
            [os.path.join(base.ROOT, 'tools', 'allinone'), 'start',
             '--computes', '2'], capture_output=True, text=True,
            timeout=RESTART_TIMEOUT)
        if proc.returncode:
            self.fail('tools/allinone start --computes 2: %d\n%s\n%s' % (
                proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))

    def _host2_back(self):
        """After a failure half-way: host 2's nova-compute running again,
        not forced down."""
        if self.compute_service(self.host2).is_forced_down:
            self.service_set(self.host2, '--up')
        if not self.pid_of('nova-compute-2'):
            self._restart_host2()
