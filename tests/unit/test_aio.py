"""nova_clear.deploy.aio: is the all-in-one up (no daemons)."""

import json
import os
from unittest import mock

import fixtures
import testtools

from nova_clear.deploy import aio


class TestNotUpReason(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.home = self.useFixture(fixtures.TempDir()).path
        self.state = os.path.join(self.home, 'aio.json')
        for name, value in (('AIO_HOME', self.home), ('STATE', self.state)):
            patch = mock.patch.object(aio, name, value)
            patch.start()
            self.addCleanup(patch.stop)

    def _write(self, state, pid=None):
        with open(self.state, 'w') as f:
            json.dump(state, f)
        if pid is not None:
            os.makedirs(os.path.join(self.home, 'run'), exist_ok=True)
            with open(os.path.join(self.home, 'run', 'nova-compute.pid'),
                      'w') as f:
                f.write('%d\n' % pid)

    def test_reasons_then_up(self):
        self.assertIn('not set up', aio.not_up_reason())
        self._write({'ready': False})
        self.assertIn('stopped', aio.not_up_reason())
        self._write({'ready': True})
        self.assertIn('nova-compute', aio.not_up_reason())
        self._write({'ready': True, 'images': {'x': '1'}}, pid=os.getpid())
        self.assertIsNone(aio.not_up_reason())
        self.assertEqual({'x': '1'}, aio.state()['images'])
