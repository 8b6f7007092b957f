"""The product never depends on its tests (issue 12): ``pip install``
ships no ``tests/``, so nothing in nova_clear/, tools/ or devstack/ may
import them."""

import os
import re

import testtools

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TESTS = re.compile(r'(from|import) tests(\.|\b)|tests\.(functional|'
                   r'integration|unit)')


class TestProductNeverImportsTests(testtools.TestCase):

    def test_no_references(self):
        found = []
        for top in ('nova_clear', 'tools', 'devstack', 'nova'):
            for dirpath, dirnames, filenames in os.walk(
                    os.path.join(ROOT, top)):
                dirnames[:] = [d for d in dirnames if d != '__pycache__']
                for name in filenames:
                    path = os.path.join(dirpath, name)
                    with open(path, 'rb') as f:
                        text = f.read().decode('utf-8', 'replace')
                    for n, line in enumerate(text.splitlines(), 1):
                        if TESTS.search(line):
                            found.append('%s:%d: %s' % (
                                os.path.relpath(path, ROOT), n, line))
        self.assertEqual([], found)
