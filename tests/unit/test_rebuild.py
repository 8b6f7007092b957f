"""Rebuild: which network-vif-plugged events spawn waits for, and Nova's
default rebuild (power off, destroy, spawn) against the fake libvirt."""

import os

import fixtures
import testtools

from nova.compute import power_state
from nova.compute import task_states
from nova import objects

from nova_clear import vif as clear_vif
from nova_clear import vif_events
from tests.unit import test_driver
from tests.unit.test_network import FakeEventVirtAPI
from tests.unit.test_network import MAC2
from tests.unit.test_network import make_vif

IMG2 = '5a1ec0de-0000-4000-8000-000000000002'


class TestEventSelection(testtools.TestCase):

    def test_only_ports_reported_down(self):
        info = [make_vif('a', active=False),
                make_vif('b', MAC2, active=True)]
        self.assertEqual([('network-vif-plugged', 'a')],
                         clear_vif.plug_events(info))

    def test_unknown_state_is_not_waited_for(self):
        vif = make_vif('a')
        del vif['active']
        self.assertEqual([], clear_vif.plug_events([vif]))

    def test_all_up_or_none(self):
        self.assertEqual([], clear_vif.plug_events(
            [make_vif('a', active=True)]))
        self.assertEqual([], clear_vif.plug_events(None))
        self.assertEqual([], clear_vif.plug_events([]))

    def test_rebuild_waits_for_nothing(self):
        self.assertEqual([], clear_vif.plug_events(
            [make_vif('a', active=False)], rebuilding=True))

    def test_is_rebuild_from_task_state(self):
        inst = objects.Instance()
        self.assertFalse(vif_events.is_rebuild(inst))
        inst.task_state = None
        self.assertFalse(vif_events.is_rebuild(inst))
        inst.task_state = task_states.SPAWNING
        self.assertFalse(vif_events.is_rebuild(inst))
        inst.task_state = task_states.REBUILD_SPAWNING
        self.assertTrue(vif_events.is_rebuild(inst))


class TestDefaultRebuild(test_driver.DriverTestCase):

    def setUp(self):
        super().setUp()
        self.virtapi = FakeEventVirtAPI()
        self.drv.virtapi = self.virtapi
        self.useFixture(fixtures.MockPatch('nova_clear.vif.check_host'))
        self.conf.config(vif_plugging_timeout=42)

    def _rebuild(self, inst, image_meta, network_info):
        """What nova's _rebuild_default_impl does with the driver."""
        inst.task_state = task_states.REBUILDING
        self.drv.power_off(inst, timeout=0)
        self.drv.destroy(self.ctx, inst, network_info)
        inst.task_state = task_states.REBUILD_SPAWNING
        self.drv.spawn(self.ctx, inst, image_meta, [], None, {},
                       network_info=network_info)

    def _xml(self, inst):
        with open(os.path.join(self.inst_dir(inst), 'domain.xml')) as f:
            return f.read()

    def test_rebuild_with_stale_ports_down_does_not_wait(self):
        inst = self.instance()
        self.spawn(inst, network_info=[make_vif(active=False)])
        self.assertEqual([([('network-vif-plugged', 'port-1')], 42)],
                         self.virtapi.waited)
        disk = os.path.join(self.inst_dir(inst), 'disk')
        with open(disk, 'ab') as f:
            f.write(b'guest data')
        # the cache still says down; a timeout would be fatal
        self.virtapi.outcome = 'timeout'
        other = objects.ImageMeta.from_dict({'id': IMG2,
                                             'disk_format': 'raw'})
        self._rebuild(inst, other, [make_vif(active=False)])
        self.assertEqual(1, len(self.virtapi.waited))
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)
        # new disks, from the new image
        with open(disk, 'rb') as f:
            self.assertEqual(b'qcow2', f.read())
        self.assertIn('uuid="%s"' % IMG2, self._xml(inst))
        self.assertIn('<interface type="direct">', self._xml(inst))

    def test_rebuild_with_ports_up_to_the_same_image(self):
        inst = self.instance()
        self.spawn(inst, network_info=[make_vif(active=True)])
        self._rebuild(inst, self.image_meta(), [make_vif(active=True)])
        self.assertEqual([], self.virtapi.waited)
        self.assertEqual(power_state.RUNNING, self.drv.get_info(inst).state)
        self.assertEqual([inst.uuid], self.drv.list_instance_uuids())

    def test_spawn_outside_rebuild_still_waits(self):
        inst = self.instance()
        inst.task_state = task_states.SPAWNING
        self.spawn(inst, network_info=[make_vif(active=False)])
        self.assertEqual(1, len(self.virtapi.waited))
