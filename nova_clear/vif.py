"""Nova VIFs -> the network devices of a Clear Container (pure functions).

A Neutron port reaches the driver as a ``nova.network.model.VIF`` whose
``type`` is the binding's ``vif_type``.  os-vif has plugins for some types
(Open vSwitch, vhost-user, ...) and none for others; ``macvtap`` is one of
the latter, so - as nova's libvirt driver does - it is described to
libvirt directly: ``<interface type='direct'>`` on the device Neutron's
macvtap mechanism driver names, and libvirt creates (and on stop deletes)
the macvtap device itself.  Neutron's macvtap agent on the host sees the
device appear and reports the port up.

``ovs`` ports (ML2/OVS, OVN) are plugged by os-vif's ``ovs`` plugin
(:mod:`nova_clear.vif_plug` calls it); the interface here is the one
nova's libvirt driver describes for the same os-vif object: nova's
Neutron API asks os-vif to create the OVS port (``delegate_create``), so
libvirt only creates the tap device of that name (``type='ethernet'``);
when Neutron asks os-vif to create the tap as well (``ovs_create_tap``)
libvirt opens the existing tap (``managed='no'``); otherwise libvirt adds
the tap to the bridge itself (``type='bridge'`` with an ``openvswitch``
virtualport).  Hybrid plugging (``ovs_hybrid_plug``: a Linux bridge per
port, for the iptables firewall) is a ``type='bridge'`` interface on that
Linux bridge.  Converting to os-vif objects is pure; nothing here touches
the host.

Types this release does not plug are refused before anything is created,
with the port and the type named.
"""

import dataclasses
import os

from nova.network import model as network_model
from nova.network import os_vif_util
import os_vif.objects
from os_vif.objects import vif as osv_vifs

from nova_clear.i18n import _

SUPPORTED_VIF_TYPES = (network_model.VIF_TYPE_MACVTAP,
                       network_model.VIF_TYPE_OVS)
# Types plugged on the host by an os-vif plugin (nova_clear.vif_plug).
OS_VIF_TYPES = (network_model.VIF_TYPE_OVS,)
MACVTAP_MODES = ('bridge', 'vepa', 'private', 'passthrough')


class VifError(ValueError):
    """A port this host cannot plug; the message says which and why.  The
    driver raises it to Nova as ``PortNotPluggable``."""


@dataclasses.dataclass(frozen=True)
class Interface:
    """One virtio-net device of a domain."""

    port_id: str
    mac: str
    type: str               # libvirt type: direct, ethernet or bridge
    source_dev: str = None  # macvtap lower device on the host
    source_mode: str = None  # macvtap mode
    vlan: int = None         # macvtap on a VLAN network: its VLAN id...
    vlan_parent: str = None  # ...and the physical interface under it
    mtu: int = None
    target_dev: str = None  # host tap device (ethernet, bridge)
    managed: bool = True    # ethernet: libvirt creates the tap
    source_bridge: str = None   # bridge: the bridge libvirt adds it to
    virtualport: str = None     # bridge: 'openvswitch' (libvirt adds...
    interface_id: str = None    # ...the OVS port with this iface-id)


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
    if vif_type == network_model.VIF_TYPE_OVS:
        return _ovs_interface(vif, mac.lower())
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
    vlan = details.get(network_model.VIF_DETAILS_VLAN)
    parent = details.get(network_model.VIF_DETAILS_PHYS_INTERFACE)
    if vlan:
        # a VLAN network: the macvtap sits on <physical interface>.<vlan>,
        # which the host makes before the guest starts (vif_plug)
        try:
            vlan = int(vlan)
        except (TypeError, ValueError):
            vlan = 0
        if not 1 <= vlan <= 4094 or not parent:
            raise VifError(_('port %(port)s: the macvtap binding has VLAN '
                             '%(vlan)s on physical interface %(dev)s') %
                           {'port': port, 'vlan': details.get('vlan'),
                            'dev': parent})
    return Interface(port_id=port, mac=mac.lower(), type='direct',
                     source_dev=source, source_mode=mode, mtu=_mtu(vif),
                     vlan=vlan or None, vlan_parent=parent if vlan else None)


def os_vif_object(vif):
    """The os-vif object of a Nova VIF, as nova's libvirt driver makes it
    (None for types os-vif has no plugin for, such as macvtap)."""
    os_vif.objects.register_all()
    return os_vif_util.nova_to_osvif_vif(vif)


def _ovs_interface(vif, mac):
    port = vif['id']
    vnic_type = vif.get('vnic_type') or network_model.VNIC_TYPE_NORMAL
    if vnic_type != network_model.VNIC_TYPE_NORMAL:
        raise VifError(_('port %(port)s: vnic_type %(vnic)s (hardware '
                         'offload) is not supported; Clear Containers plug '
                         'OVS ports of vnic_type normal') %
                       {'port': port, 'vnic': vnic_type})
    if not (vif.get('network') or {}).get('bridge'):
        raise VifError(_('port %s: the OVS binding names no bridge') % port)
    try:
        obj = os_vif_object(vif)
    except Exception as e:
        raise VifError(_('port %(port)s: cannot describe it to os-vif: '
                         '%(err)s') % {'port': port, 'err': e})
    common = dict(port_id=port, mac=mac, mtu=_mtu(vif),
                  target_dev=obj.vif_name)
    if isinstance(obj, osv_vifs.VIFBridge):
        # hybrid plug: os-vif made the Linux bridge and its veth to OVS
        return Interface(type='bridge', source_bridge=obj.bridge_name,
                         **common)
    profile = obj.port_profile
    if _set(profile, 'create_tap'):
        # os-vif created the OVS port and the tap: libvirt opens the tap
        return Interface(type='ethernet', managed=False, **common)
    if _set(profile, 'create_port'):
        # os-vif created the OVS port; libvirt creates the tap by its name
        return Interface(type='ethernet', **common)
    # libvirt creates the tap and adds it to the OVS bridge itself
    return Interface(type='bridge', source_bridge=obj.bridge_name,
                     virtualport='openvswitch',
                     interface_id=profile.interface_id, **common)


def _set(obj, field):
    return field in obj.fields and field in obj and bool(getattr(obj, field))


def interfaces(network_info):
    """All interfaces of an instance, in Nova's order (eth0, eth1, ...)."""
    return tuple(interface(vif) for vif in network_info or ())


def plug_events(network_info, rebuilding=False):
    """The ``network-vif-plugged`` events to wait for before the guest
    runs: ports Neutron still reports down (as nova's libvirt driver's
    ``_get_neutron_events``).

    None when ``rebuilding`` (spawn called by Nova's rebuild): the ports
    stayed bound to the instance all along, and the ``network_info`` Nova
    passes is its cache (``instance.get_network_info()``), whose
    ``active`` may be stale - False from before the first boot's event
    (the cache heals only periodically) or from a stop.  Neutron sends
    ``network-vif-plugged`` only on a DOWN -> ACTIVE transition, which a
    port whose macvtap or tap device is deleted and made again by destroy
    and spawn (between two polls of its agent) never makes: waiting ends
    in VifPlugTimeout.  nova's libvirt driver does the same on hard reboot
    (``vifs_already_plugged=True``) for the same reason.
    """
    if rebuilding:
        return []
    return [('network-vif-plugged', vif['id'])
            for vif in network_info or ()
            if vif.get('active', True) is False]


def check_host(ifaces, sysfs='/sys/class/net'):
    """Every macvtap source device exists on this host (for a VLAN
    network: the physical interface the VLAN device is made on)."""
    for iface in ifaces:
        if iface.type != 'direct':
            continue
        dev = iface.vlan_parent or iface.source_dev
        if not os.path.exists(os.path.join(sysfs, dev)):
            raise VifError(_('port %(port)s: the macvtap source device '
                             '%(dev)s does not exist on this host') %
                           {'port': iface.port_id, 'dev': dev})
