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
        self.publish(1)
        self.update('update', '--to', '1')
        files = {'usr/share/data/%03d' % i: b'v2 %d\n' % i * 500
                 for i in range(150)}
        self.publish(2, delta_from=1, extra=files)
        host = updater.Updater(self.root)

        start = time.monotonic()
        self.update('update')
        full_run = time.monotonic() - start
        host.rollback()

        outcomes = collections.Counter()
        for point in range(POINTS):
            proc = subprocess.Popen(self.update_cmd('update'),
                                    stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(rnd.uniform(0, full_run))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            version, _state = boot.choose(boot.read(self.root))
            self.assertIn(version, (1, 2), 'point %d' % point)
            self.assert_snapshot_is(version)
            outcomes['killed' if proc.returncode < 0 else 'finished',
                     version] += 1
            rerun = self.update('update')
            self.assertIn('version 2 staged', rerun.stdout)
            self.assertEqual(2, boot.choose(boot.read(self.root))[0])
            self.assert_snapshot_is(2)
            host.rollback()
        self.addDetail('outcomes', base.text_detail(repr(dict(outcomes))))
        self.assertEqual(POINTS, sum(outcomes.values()))
        self.assertTrue(outcomes['killed', 1], outcomes)
