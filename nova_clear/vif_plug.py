"""Plugging and unplugging ports on the host with os-vif.

Ports whose VIF type has an os-vif plugin (``ovs``) are plugged here
when the domain starts (:func:`launch_plugged`) and unplugged when the
instance goes away, as nova's libvirt driver does; the libvirt interface
that matches what os-vif did comes from :func:`nova_clear.vif.interface`.
macvtap ports have no os-vif plugin: libvirt creates and removes their
devices, nothing is done here.

os-vif is configured in nova-compute's configuration, like for nova's
libvirt driver: ``[os_vif_ovs]`` (``ovsdb_connection``, ``isolate_vif``,
...) and its privsep daemon in ``[vif_plug_ovs_privileged]``.
"""

import os
import threading

import os_vif
from os_vif import exception as osv_exception
from oslo_log import log as logging
from vif_plug_ovs import linux_net as ovs_linux_net

from nova.network import os_vif_util
import nova.privsep.linux_net

from nova_clear import exception as clear_exc
from nova_clear.i18n import _
from nova_clear import vif as clear_vif

LOG = logging.getLogger(__name__)

_init_lock = threading.Lock()
_vlan_lock = threading.Lock()  # two instances on one new VLAN at once
_initialized = False


def initialize():
    """Load the os-vif plugins once per process (thread-safe)."""
    global _initialized
    if _initialized:
        return
    with _init_lock:
        if not _initialized:
            os_vif.initialize()
            _initialized = True


def _os_vif_ports(network_info):
    """(Nova VIF, os-vif VIF) of the ports os-vif plugs."""
    for vif in network_info or ():
        if vif.get('type') in clear_vif.OS_VIF_TYPES:
            obj = clear_vif.os_vif_object(vif)
            if obj is not None:
                yield vif, obj


def _prepared(instance, network_info):
    """(Nova VIF, os-vif VIF, os-vif instance info) of the ports os-vif
    plugs; os-vif is initialised only when there is one."""
    ports = list(_os_vif_ports(network_info))
    if not ports:
        return []
    initialize()
    info = os_vif_util.nova_to_osvif_instance(instance)
    return [(vif, obj, info) for vif, obj in ports]


def tap_made_by_libvirt(obj):
    """True for an OVS port os-vif adds for a tap libvirt creates at start
    (``create_port`` without ``create_tap``).  Such a port is plugged once
    the tap exists: Open vSwitch's userspace datapath opens a device as
    soon as it appears, and a tap it opened before libvirt brought it up
    passes no traffic (``Network is down``) for as long as it lives."""
    profile = getattr(obj, 'port_profile', None)
    return isinstance(obj, os_vif.objects.vif.VIFOpenVSwitch) and \
        profile is not None and \
        clear_vif._set(profile, 'create_port') and \
        not clear_vif._set(profile, 'create_tap')


def _tap_made_by_os_vif(obj):
    profile = getattr(obj, 'port_profile', None)
    return isinstance(obj, os_vif.objects.vif.VIFOpenVSwitch) and \
        profile is not None and clear_vif._set(profile, 'create_tap')


def _tap_up_first(instance, vif, obj):
    """The tap of a ``create_tap`` port, made and up before os-vif adds
    its OVS port (os-vif adds the port, then makes the tap: the userspace
    datapath would open it before it is up, see
    :func:`tap_made_by_libvirt`); os-vif then finds it and keeps it.  Made
    by os-vif's own privileged helper, as os-vif makes it."""
    if os.path.exists(os.path.join('/sys/class/net', obj.vif_name)):
        return
    network = obj.network
    mtu = network.mtu if 'mtu' in network and network.mtu else None
    try:
        ovs_linux_net.create_tap(obj.vif_name, mtu, str(obj.address))
    except Exception as e:
        raise clear_exc.PortNotPluggable(
            name=instance.name,
            reason=_('cannot create the tap %(tap)s of port %(port)s: '
                     '%(err)s') % {'tap': obj.vif_name, 'port': vif['id'],
                                   'err': e})


def ensure_vlans(instance, network_info):
    """The VLAN devices under the instance's macvtap ports on VLAN
    networks (``<physical interface>.<vlan>``, as neutron's macvtap
    mechanism driver names them), made and up if missing, as nova's
    libvirt driver does (``plug_macvtap``) with nova's privsep helpers.
    They stay when the instance goes: other instances share them."""
    for iface in clear_vif.interfaces(network_info):
        if not iface.vlan:
            continue
        try:
            with _vlan_lock:
                if not nova.privsep.linux_net.device_exists(
                        iface.source_dev):
                    LOG.debug('Making VLAN device %s (VLAN %d on %s)',
                              iface.source_dev, iface.vlan,
                              iface.vlan_parent, instance=instance)
                    nova.privsep.linux_net.add_vlan(
                        iface.vlan_parent, iface.source_dev, iface.vlan)
                nova.privsep.linux_net.set_device_enabled(iface.source_dev)
        except Exception as e:
            raise clear_exc.PortNotPluggable(
                name=instance.name,
                reason=_('port %(port)s: could not make VLAN device %(dev)s '
                         '(VLAN %(vlan)d on %(parent)s): %(err)s') %
                {'port': iface.port_id, 'dev': iface.source_dev,
                 'vlan': iface.vlan, 'parent': iface.vlan_parent,
                 'err': _cause(e)})


def plug(instance, network_info, only=None):
    """Plug the os-vif ports of the instance (idempotent), or raise
    :class:`~nova_clear.exception.PortNotPluggable` naming the port.
    ``only``: 'before' the ports needed before the domain starts, 'after'
    those whose tap libvirt creates (:func:`tap_made_by_libvirt`), None
    all of them.  Macvtap ports on VLAN networks get their VLAN device
    before the domain starts."""
    if only != 'after':
        ensure_vlans(instance, network_info)
    for vif, obj, info in _prepared(instance, network_info):
        if only is not None and \
                tap_made_by_libvirt(obj) != (only == 'after'):
            continue
        if _tap_made_by_os_vif(obj):
            _tap_up_first(instance, vif, obj)
        try:
            os_vif.plug(obj, info)
        except osv_exception.ExceptionBase as e:
            raise clear_exc.PortNotPluggable(
                name=instance.name,
                reason=_('os-vif could not plug port %(port)s (%(type)s on '
                         '%(bridge)s): %(err)s') %
                {'port': vif['id'], 'type': vif['type'],
                 'bridge': vif['network']['bridge'], 'err': _cause(e)})


def launch_plugged(instance, network_info, guest, pause=False):
    """Plug the ports and launch ``guest``: the ports whose tap libvirt
    creates are plugged after it did (the guest paused meanwhile, then
    resumed unless ``pause``)."""
    late = any(tap_made_by_libvirt(obj)
               for _vif, obj in _os_vif_ports(network_info))
    plug(instance, network_info, only='before')
    guest.launch(pause=pause or late)
    if late:
        plug(instance, network_info, only='after')
        if not pause:
            guest.resume()


def unplug(instance, network_info):
    """Unplug every os-vif port of the instance.  Ports already gone are
    fine; failures are logged, never raised (the instance is going away).
    """
    for vif, obj, info in _prepared(instance, network_info):
        try:
            os_vif.unplug(obj, info)
        except Exception as e:
            LOG.warning('os-vif could not unplug port %(port)s: %(err)s',
                        {'port': vif['id'], 'err': _cause(e)},
                        instance=instance)


def _cause(e):
    # os-vif's PlugException repeats the whole VIF object; its cause is
    # what the operator needs.
    err = getattr(e, 'kwargs', {}).get('err') if isinstance(
        e, osv_exception.ExceptionBase) else None
    return err if err is not None else e
