"""The boot benchmark's smoke form runs (one iteration), so it cannot rot.

This measures nothing and asserts no speed: it checks that every scenario
of tools/bench_boot.py still completes and that its JSON and PNG appear.
"""

import json
import os
import subprocess
import sys

from tests.functional import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


class TestBenchSmoke(base.FunctionalTestCase):

    def test_smoke(self):
        out = os.path.join(self.tmp, 'bench')
        proc = subprocess.run(
            [sys.executable, os.path.join(ROOT, 'tools', 'bench_boot.py'),
             '--smoke', '--assets', self.assets_path, '--out', out],
            capture_output=True, text=True, timeout=900)
        self.assertEqual(0, proc.returncode,
                         proc.stdout[-3000:] + proc.stderr[-3000:])
        with open(os.path.join(out, 'boot-bench.json')) as f:
            result = json.load(f)
        for kernel in result['kernels']:
            for scenario in ('floor', 'driver', 'container'):
                stats = result['boot']['%s-%s' % (scenario, kernel)]
                self.assertEqual(0, stats['failures'], scenario)
        self.assertEqual(0, result['boot']['fullvm']['failures'])
        self.assertEqual(0, result['concurrency']['failures'])
        self.assertIn('driver/floor (%s)' % next(iter(result['kernels'])),
                      result['ratios'])
        self.assertGreater(os.path.getsize(
            os.path.join(out, 'boot-bench.png')), 1000)
