"""Nova VIFs -> the network devices of a Clear Container (pure functions).

A Neutron port reaches the driver as a ``nova.network.model.VIF`` whose
``type`` is the binding's ``vif_type``.  os-vif has plugins for some types
(Open vSwitch, vhost-user, ...) and none for others; ``macvtap`` is one of
the latter, so - as nova's libvirt driver does - it is described to
libvirt directly: ``<interface type='direct'>`` on the device Neutron's
macvtap mechanism driver names, and libvirt creates (and on stop deletes)
the macvtap device itself.  Neutron's macvtap agent on the host sees the
device appear and reports the port up.

Types this release does not plug are refused before anything is created,
with the port and the type named.
"""

import dataclasses
import os

from nova.network import model as network_model

from nova_clear.i18n import _

SUPPORTED_VIF_TYPES = (network_model.VIF_TYPE_MACVTAP,)
MACVTAP_MODES = ('bridge', 'vepa', 'private', 'passthrough')


class VifError(ValueError):
    """A port this host cannot plug; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Interface:
    """One virtio-net device of a domain."""

    port_id: str
    mac: str
    type: str               # libvirt interface type: 'direct'
    source_dev: str         # macvtap lower device on the host
    source_mode: str        # macvtap mode
    mtu: int = None


def _mtu(vif):
    mtu = ((vif.get('network') or {}).get('meta') or {}).get('mtu')
    return int(mtu) if mtu else None


def interface(vif):
    """The :class:`Interface` of one Nova VIF, or :class:`VifError`."""
    port = vif.get('id')
    vif_type = vif.get('type')
    if vif_type in (network_model.VIF_TYPE_BINDING_FAILED,
                    network_model.VIF_TYPE_UNBOUND, None):
        raise VifError(_('port %(port)s is not bound to this host '
                         '(binding:vif_type %(type)s); check that the '
                         'Neutron agent of this host runs and maps the '
                         'port\'s physical network') %
                       {'port': port, 'type': vif_type})
    if vif_type not in SUPPORTED_VIF_TYPES:
        raise VifError(_('port %(port)s has VIF type %(type)s, which Clear '
                         'Containers cannot plug (supported: %(ok)s)') %
                       {'port': port, 'type': vif_type,
                        'ok': ', '.join(SUPPORTED_VIF_TYPES)})
    mac = vif.get('address')
    if not mac:
        raise VifError(_('port %s has no MAC address') % port)
    details = vif.get('details') or {}
    source = details.get(network_model.VIF_DETAILS_MACVTAP_SOURCE)
    mode = details.get(network_model.VIF_DETAILS_MACVTAP_MODE)
    if not source or not mode:
        raise VifError(_('port %(port)s: the macvtap binding names no '
                         'source device or mode (vif_details %(d)s)') %
                       {'port': port, 'd': dict(details)})
    if mode not in MACVTAP_MODES:
        raise VifError(_('port %(port)s: unknown macvtap mode %(mode)s') %
                       {'port': port, 'mode': mode})
    return Interface(port_id=port, mac=mac.lower(), type='direct',
                     source_dev=source, source_mode=mode, mtu=_mtu(vif))


def interfaces(network_info):
    """All interfaces of an instance, in Nova's order (eth0, eth1, ...)."""
    return tuple(interface(vif) for vif in network_info or ())


def plug_events(network_info):
    """The ``network-vif-plugged`` events to wait for before the guest
    runs: ports Neutron still reports down (as nova's libvirt driver)."""
    return [('network-vif-plugged', vif['id'])
            for vif in network_info or ()
            if vif.get('active', True) is False]


def check_host(ifaces, sysfs='/sys/class/net'):
    """Every macvtap source device exists on this host."""
    for iface in ifaces:
        if iface.type == 'direct' and not os.path.exists(
                os.path.join(sysfs, iface.source_dev)):
            raise VifError(_('port %(port)s: the macvtap source device '
                             '%(dev)s does not exist on this host') %
                           {'port': iface.port_id, 'dev': iface.source_dev})
