"""SIGKILL ``clear-update update`` at random points.

After every kill the root boots the old or the new version, that
snapshot is exactly its manifest (never a mix), and a re-run completes.
``HOSTOS_CRASH_POINTS`` sets the number of points (default 50),
``HOSTOS_CRASH_SEED`` the random seed (printed on failure).
"""

import collections
import os
import random
import signal
import subprocess
import time

from nova_clear.hostos import boot
from nova_clear.hostos import updater
from tests.functional.hostos import base

POINTS = int(os.environ.get('HOSTOS_CRASH_POINTS', '50'))


class CrashSafetyTest(base.HostOSTestCase):
    def test_sigkill_at_random_points(self):
        seed = int(os.environ.get('HOSTOS_CRASH_SEED',
                                  str(random.randrange(1 << 30))))
        rnd = random.Random(seed)
        self.addDetail('seed', base.text_detail(str(seed)))
        # SIGKILL, not power loss: the root lives on a tmpfs so that the
        # fsyncs of ~50 runs do not dominate (and disturb the shared disk).
        self.root = os.path.join(self.dir, 'tmpfs-root')
        os.makedirs(self.root)
        subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=256m', 'tmpfs',
                        self.root], check=True)
        self.addCleanup(subprocess.run, ['umount', '-l', self.root])
        self.publish(1)
        self.update('update', '--to', '1')
        files = {'usr/share/data/%03d' % i: b'v2 %d\n' % i * 500
                 for i in range(400)}
        self.publish(2, delta_from=1, extra=files)
        host = updater.Updater(self.root)

        full_run, staging_time = self._observed_run()
        host.rollback()

        outcomes = collections.Counter()
        for point in range(POINTS):
            proc = subprocess.Popen(self.update_cmd('update'),
                                    stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            if point % 2:
                # Anywhere in the run.
                time.sleep(rnd.uniform(0, full_run * 1.05))
            else:
                # While the snapshot is built, the phase that matters.
                self._wait_for(proc, '.staging-2')
                time.sleep(rnd.uniform(0, staging_time))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            leftovers = [n for n in os.listdir(os.path.join(
                self.root, 'versions')) if n.startswith('.staging-')]
            version, _state = boot.choose(boot.read(self.root))
            self.assertIn(version, (1, 2), 'point %d' % point)
            self.assert_snapshot_is(version)
            outcomes['killed' if proc.returncode < 0 else 'finished',
                     'while staging' if leftovers else '', version] += 1
            rerun = self.update('update')
            self.assertIn('version 2 staged', rerun.stdout)
            self.assertEqual(2, boot.choose(boot.read(self.root))[0])
            self.assert_snapshot_is(2)
            host.rollback()
        self.addDetail('outcomes', base.text_detail(repr(dict(outcomes))))
        self.assertEqual(POINTS, sum(outcomes.values()))
        self.assertGreater(outcomes['killed', 'while staging', 1],
                           POINTS // 5, outcomes)

    def _wait_for(self, proc, name):
        path = os.path.join(self.root, 'versions', name)
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and proc.poll() is None and \
                time.monotonic() < deadline:
            time.sleep(0.001)

    def _observed_run(self):
        """(duration of a whole update, of its staging phase)."""
        start = time.monotonic()
        proc = subprocess.Popen(self.update_cmd('update'),
                                stdout=subprocess.DEVNULL)
        self._wait_for(proc, '.staging-2')
        staging = time.monotonic()
        self._wait_for(proc, '2')
        staged = time.monotonic()
        self.assertEqual(0, proc.wait())
        return time.monotonic() - start, max(staged - staging, 0.001)
