"""The CPU traits (``HW_CPU_X86_*``, ``HW_ARCH_*``) this host reports to
Placement, so that flavors and images can require CPU features
(``trait:HW_CPU_X86_AVX2=required``).

They describe the CPU the Clear Containers get, as nova's libvirt driver's
do (``_get_cpu_feature_traits``), with its helper
``nova.virt.libvirt.utils.cpu_features_to_traits``:

- KVM with ``[clear]cpu_mode`` host-passthrough or host-model: the host
  CPU of libvirt's capabilities.
- QEMU (TCG), and KVM with ``cpu_mode=none``: the domain XML has no <cpu>
  element, so the guest runs QEMU's default model (qemu64 on x86_64, what
  ``nova.virt.libvirt.utils.get_cpu_model_from_arch`` names): its
  features, not the host's.  A TCG guest cannot use the host's AVX2, and
  placement must not say it can.

Unlike nova's libvirt driver, the host CPU's features are expanded with
the model's (libvirt lists only what the host adds to its model, e.g. to
kvm64, so nova reports no SSE2 on such hosts).  The traits are a dict of
every CPU trait nova knows, True or False: False ones are removed from
the provider (the host's accelerator may change between restarts).
"""

from xml.etree import ElementTree as ET

import os_traits
from oslo_log import log as logging

import nova.conf
from nova.virt.libvirt import utils as libvirt_utils

from nova_clear import conf as clear_conf

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF
clear_conf.register_opts(CONF)

HOST_CPU_MODES = ('host-passthrough', 'host-model')


def features(cpu_xml):
    """The names of the features a <cpu> element enables."""
    cpu = ET.fromstring(cpu_xml)
    return {f.get('name') for f in cpu.findall('feature')
            if f.get('policy', 'require') not in ('disable', 'forbid')}


def guest_cpu(capabilities_xml, virt_type, cpu_mode):
    """(arch, <cpu> XML) of the CPU the guests get."""
    host_cpu = ET.fromstring(capabilities_xml).find('host/cpu')
    arch = host_cpu.findtext('arch')
    if virt_type == 'kvm' and cpu_mode in HOST_CPU_MODES:
        return arch, ET.tostring(host_cpu, encoding='unicode')
    model = libvirt_utils.get_cpu_model_from_arch(arch)
    return arch, ('<cpu><arch>%s</arch><model>%s</model></cpu>'
                  % (arch, model))


def traits(host, virt_type, cpu_mode):
    """{trait: bool} of the guests' CPU on ``host``
    (:class:`nova_clear.host.Host`)."""
    arch, cpu_xml = guest_cpu(host.capabilities(), virt_type, cpu_mode)
    expanded = host.expand_cpu(cpu_xml)
    if expanded is None:
        LOG.info('libvirt cannot expand the CPU model: reporting only the '
                 'CPU features it lists')
    result = libvirt_utils.cpu_features_to_traits(
        features(expanded or cpu_xml))
    arch_trait = 'HW_ARCH_' + arch.upper()
    if arch_trait in os_traits.get_traits(prefix='HW_ARCH_'):
        result[arch_trait] = True
    return result


class CpuTraits:
    """The traits of one host, found once per accelerator (they change
    only with the host's CPU or libvirt, i.e. across restarts)."""

    def __init__(self, host):
        self.host = host
        self._traits = {}

    def get(self, virt_type):
        key = (virt_type, CONF['clear'].cpu_mode)
        if key not in self._traits:
            self._traits[key] = traits(self.host, *key)
        return self._traits[key]

    def apply(self, provider_tree, nodename, virt_type):
        """Set the guest CPU's traits on the provider and remove the CPU
        traits it lacks; other traits stay as they are."""
        found = self.get(virt_type)
        provider_tree.add_traits(
            nodename, *sorted(t for t, on in found.items() if on))
        provider_tree.remove_traits(
            nodename, *sorted(t for t, on in found.items() if not on))
