"""tools/aio/tempest.py: the subset CI runs, and how a run is counted."""

import contextlib
import io
import json
import re
import subprocess
import sys
import unittest

import subunit
import testtools

from tools.aio import tempest


class TestSmokeSubset(testtools.TestCase):

    def test_covers_the_day_two_operations(self):
        smoke = re.compile(tempest.SMOKE)
        base = 'tempest.api.compute.'
        for name in (
                'servers.test_server_actions.ServerActionsTestJSON.'
                'test_resize_server_confirm',
                'servers.test_server_actions.ServerActionsTestJSON.'
                'test_rebuild_server',
                'servers.test_server_actions.ServerActionsTestOtherB.'
                'test_shelve_unshelve_server',
                'servers.test_server_rescue.ServerRescueTestJSON.'
                'test_rescue_unrescue_instance',
                'images.test_images_oneserver.ImagesOneServerTestJSON.'
                'test_create_delete_image',
                'servers.test_disk_config.ServerDiskConfigTestJSON.'
                'test_resize_server_from_manual_to_auto'):
            self.assertTrue(smoke.search(base + name), name)
        for name in ('servers.test_server_actions.ServerActionsTestJSONx.t',
                     'servers.test_server_rescue_negative.X.test_y',
                     'admin.test_live_migration.X.test_y'):
            self.assertFalse(smoke.search(base + name), name)

    def test_flavors_per_machine_variant(self):
        self.assertEqual({'microvm', 'q35'}, set(tempest.FLAVORS))

    def test_full_run_leaves_out_slow_tests(self):
        slow = re.compile(tempest.EXCLUDE_SLOW)
        self.assertTrue(slow.search('tempest.a.B.test_c[id-1,slow]'))
        self.assertTrue(slow.search('tempest.a.B.test_c[id-1,network,slow]'))
        self.assertFalse(slow.search('tempest.a.B.test_slowly[id-1]'))


def _sample_suite():
    """Four tests (made here, so that discovery does not run them)."""
    class Sample(unittest.TestCase):
        def test_ok(self):
            pass

        def test_fails(self):
            self.fail('no')

        def test_skipped(self):
            self.skipTest('Resize not available.')

        def test_skipped_too(self):
            self.skipTest('Resize not available.')
    return unittest.defaultTestLoader.loadTestsFromTestCase(Sample)


class TestSummary(testtools.TestCase):
    """The summary script reads a real subunit v2 stream."""

    def test_counts_and_skip_reasons(self):
        buf = io.BytesIO()
        result = testtools.ExtendedToStreamDecorator(
            subunit.StreamResultToBytes(buf))
        result.startTestRun()
        _sample_suite().run(result)
        result.stopTestRun()
        out = subprocess.run([sys.executable, '-c', tempest._SUMMARY],
                             input=buf.getvalue(), capture_output=True,
                             check=True).stdout
        summary = json.loads(out)
        self.assertEqual(1, len(summary['passed']))
        self.assertEqual(1, len(summary['failed']))
        self.assertIn('test_fails', summary['failed'][0])
        self.assertEqual({'Resize not available.': 2}, summary['skipped'])

    def test_report_line(self):
        out = io.StringIO()
        summary = {'passed': ['a', 'b'], 'failed': ['c'],
                   'skipped': {'x': 3}}
        with contextlib.redirect_stdout(out):
            tempest.report(summary, '/log')
        lines = out.getvalue().splitlines()
        self.assertEqual('2 passed, 1 failed, 3 skipped', lines[-1])
        self.assertIn('FAILED c', lines)
