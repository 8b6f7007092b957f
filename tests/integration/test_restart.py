"""nova-compute restarted under running Clear Containers.

In its own module so that it runs after the others (stestr orders by test
id): it restarts the all-in-one's nova-compute.
"""

import os
import subprocess
import time

import libvirt

from tests.integration import base


class TestComputeRestart(base.IntegrationTestCase):

    def _qemu_pid(self, server_id):
        out = subprocess.run(['pgrep', '-f', '-uuid %s' % server_id],
                             capture_output=True, text=True).stdout
        return sorted(out.split())

    def test_restart_keeps_servers_running_and_managed(self):
        servers = [self.create('restart%d' % i, wait=False)
                   for i in range(3)]
        servers = [self.wait_status(s, 'ACTIVE') for s in servers]
        for s in servers:
            self.wait_console(s, self.workload_line(s))
        pids = {s.id: self._qemu_pid(s.id) for s in servers}

        proc = subprocess.run(
            [os.path.join(base.ROOT, 'tools', 'allinone'), 'restart',
             'nova-compute'], capture_output=True, text=True, timeout=600)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)

        for s in servers:
            s = self.wait_status(s, 'ACTIVE')
            self.assertEqual(1, s.power_state)      # RUNNING
            self.assertEqual(libvirt.VIR_DOMAIN_RUNNING,
                             self.libvirt_domain(s.id))
            self.assertEqual(pids[s.id], self._qemu_pid(s.id),
                             'the guest was restarted')
        # still managed by the new nova-compute
        first = servers[0]
        self.conn.compute.stop_server(first)
        self.wait_status(first, 'SHUTOFF')
        self.conn.compute.start_server(first)
        self.wait_status(first, 'ACTIVE')
        self.wait_console(first, self.workload_line(first), count=2)
        for s in servers:
            self.delete(s.id)
        deadline = time.monotonic() + 60
        for s in servers:
            self.assert_gone_from_host(
                s.id, timeout=max(1, deadline - time.monotonic()))
