import os

import setuptools
from setuptools import dist as st_dist

# Nova loads drivers only from the nova.virt package, so nova-clear ships
# one extra module there, nova/virt/clear/__init__.py, and nothing else of
# the nova namespace (never nova/__init__.py or nova/virt/__init__.py).
# pbr keeps only [files] packages that are directories, so the shim is
# added here after pbr has read setup.cfg.
#
# NOVA_CLEAR_NOVA_SHIM=no leaves it out: where nova runs from a source tree
# installed in develop mode (devstack), a nova/ directory in site-packages
# would shadow nova's own nova.virt; there the shim is linked into nova's
# tree instead (devstack/plugin.sh).
SHIM_PACKAGE = 'nova.virt.clear'
WANT_SHIM = os.environ.get('NOVA_CLEAR_NOVA_SHIM', 'yes').lower() not in (
    'no', '0', 'false')


class Distribution(st_dist.Distribution):
    def run_commands(self):
        if WANT_SHIM and SHIM_PACKAGE not in (self.packages or []):
            self.packages = list(self.packages or []) + [SHIM_PACKAGE]
        super().run_commands()


setuptools.setup(
    setup_requires=['pbr>=6.0.0'],
    pbr=True,
    distclass=Distribution)
