"""Host-level behaviour against the real daemon: nova loads the driver
through its shim, virt_type=auto probes, inventory is real."""

import os
import subprocess
import sys

import libvirt

from nova.compute import provider_tree
from nova.virt import driver as nova_driver
from nova.virt import fake as fake_virt

from nova_clear import driver as clear_driver
from tests.functional import base
from tests.functional import images


class TestNovaLoadsDriver(base.FunctionalTestCase):

    def test_load_compute_driver_through_shim(self):
        """compute_driver=clear.ClearDriver works from an installed copy.

        The shim lives in nova's own nova/virt/ directory.
        """
        code = (
            'import nova.conf\n'
            'from nova.virt import driver, fake\n'
            'nova.conf.CONF([], project="nova", default_config_files=[])\n'
            'd = driver.load_compute_driver(fake.FakeVirtAPI(), '
            '"clear.ClearDriver")\n'
            'import nova.virt.clear\n'
            'print(type(d).__module__, type(d).__name__, '
            'nova.virt.clear.__file__)\n')
        # Run outside the source tree so that only the installed
        # distribution can provide nova.virt.clear.
        out = subprocess.run([sys.executable, '-c', code], cwd='/',
                             capture_output=True, text=True)
        self.assertEqual(0, out.returncode, out.stderr[-2000:])
        module, name, shim = out.stdout.split()
        self.assertEqual(('nova_clear.driver', 'ClearDriver'),
                         (module, name))
        self.assertIn('site-packages/nova/virt/clear/__init__.py', shim)


class TestAutoVirtType(base.FunctionalTestCase):
    virt_type = 'auto'

    def test_auto_picks_a_type_that_boots(self):
        self.conf.config(group='clear', kvm_probe_timeout=15)
        drv = self.make_driver()
        self.assertIn(drv.virt_type, ('kvm', 'qemu'))
        # Whatever the probe chose must really boot an instance: a wrong
        # choice (KVM on a host where it hangs) fails here.
        image = self.glance.add(images.disk_image('fs'), 'raw')
        inst = self.spawn(drv, image)
        self.wait_ready(drv, inst)
        # The probe leaves no domain and no log behind (other test workers
        # may have domains of their own).
        self.assertIn(inst.uuid, drv.list_instance_uuids())
        conn = libvirt.open('qemu:///system')
        self.addCleanup(conn.close)
        self.assertEqual([], [d.name() for d in conn.listAllDomains()
                              if d.name().startswith('nova-clear-probe')])
        self.assertEqual(
            [], [f for f in os.listdir(self.conf.conf['clear'].instances_path)
                 if f.startswith('nova-clear-probe')])


class TestInventory(base.FunctionalTestCase):

    def test_provider_tree_and_resources(self):
        drv = self.make_driver()
        image = self.glance.add(images.disk_image('fs'), 'raw')
        tree = provider_tree.ProviderTree()
        tree.new_root('host', 'rp-uuid')
        drv.update_provider_tree(tree, 'host')
        self.spawn(drv, image, memory_mb=256, vcpus=2)
        drv.update_provider_tree(tree, 'host')
        data = tree.data('host')
        overhead = self.conf.conf['clear'].memory_overhead_mb
        self.assertEqual(os.cpu_count(), data.inventory['VCPU']['total'])
        # Other test workers may run instances too: at least ours counts,
        # in whole per-instance overheads.
        extra = data.inventory['MEMORY_MB']['reserved'] - \
            self.conf.conf.reserved_host_memory_mb
        self.assertGreaterEqual(extra, overhead)
        self.assertEqual(0, extra % overhead)
        self.assertIn('CUSTOM_CLEAR_CONTAINERS', data.traits)
        self.assertIn('COMPUTE_IMAGE_TYPE_QCOW2', data.traits)
        self.assertNotIn('COMPUTE_IMAGE_TYPE_VMDK', data.traits)
        res = drv.get_available_resource(drv.get_available_nodes()[0])
        self.assertGreaterEqual(res['vcpus_used'], 2)
        self.assertGreaterEqual(res['memory_mb_used'], 256 + overhead)
        self.assertGreater(res['local_gb'], 0)
        self.assertIsInstance(
            nova_driver.load_compute_driver(fake_virt.FakeVirtAPI(),
                                            'clear.ClearDriver'),
            clear_driver.ClearDriver)
