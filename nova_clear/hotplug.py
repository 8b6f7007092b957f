"""Interface attach and detach (Nova's ``attach_interface`` /
``detach_interface``) on the PCI variant of a Clear Container.

Only the q35 variant (:mod:`nova_clear.domain_pci`) has a bus that
hot-plugs: there the NIC is the same ``<interface>`` the domain XML gives
a port at boot (:func:`nova_clear.domain.interface_xml`, virtio-net-pci),
attached to the running guest - into a spare ``pcie-root-port`` - and to
the persistent definition, so that a stop and start through libvirt keeps
it; Nova's next ``network_info`` has the port too, so the XML a hard
reboot or power-on generates has it as well.  A stopped instance gets it
in its definition only.  OVS ports are plugged by os-vif before the
attach (or, when libvirt makes the tap, right after it) and unplugged
after the detach, as at boot (a stopped instance's when it starts).
microvm instances are refused with ``AttachInterfaceNotSupported``,
naming the variant and how to get one that hot-plugs.

What the guest does with a hot-plugged NIC: QEMU's q35 signals hot-plug
through ACPI (and its _OSC keeps native PCIe hot-plug from the guest), so
the guest kernel's ACPI PCI hot-plug driver (acpiphp: built into the
minimal kernel and Debian's) scans the slot and adds the NIC as a new
``ethN`` - the workload sees it appear, with the port's MAC address.  The
agent configures interfaces once, from the kernel command line at boot
(:mod:`nova_clear.guest.network`), and there is nothing else to learn an
address from at run time (no metadata service, no DHCP on the all-in-one's
networks): a hot-plugged NIC comes up without an address, which the
workload configures itself (its port's fixed IPs are in Nova's and
Neutron's API), until the next hard reboot or stop/start, when the agent
configures it like any other port.  Detaching needs the guest's
cooperation (it ejects the device through ACPI); a guest that does not
release the device within the timeout fails the detach, and the port
stays.
"""

from oslo_log import log as logging

from nova import exception

from nova_clear import domain
from nova_clear import domain_pci
from nova_clear import vif_plug

LOG = logging.getLogger(__name__)

# Seconds a live detach waits for the guest to release the device (the
# guest's driver unbinds, then ACPI ejects it; slow under TCG).
DETACH_TIMEOUT = 60


def _hot_pluggable_guest(drv, instance):
    guest = drv.host.lookup(instance.uuid)
    machine = guest.machine_type()
    if not domain_pci.supports_hotplug(machine):
        raise exception.AttachInterfaceNotSupported(
            message=domain_pci.not_hot_pluggable(instance, machine),
            instance_uuid=instance.uuid)
    return guest, machine


def attach(drv, instance, vif):
    """Hot-plug the port ``vif`` (a Nova VIF) into ``instance``."""
    guest, machine = _hot_pluggable_guest(drv, instance)
    iface = drv._interfaces(instance, [vif])[0]   # PortNotPluggable
    if guest.interface_xml(iface.mac, inactive=True):
        LOG.info('Port %s is attached already', vif['id'], instance=instance)
        return
    xml = domain.interface_xml(iface, machine)
    running = guest.is_active()
    late = any(vif_plug.tap_made_by_libvirt(obj)
               for _v, obj in vif_plug._os_vif_ports([vif]))
    try:
        if running:
            # A stopped instance's ports are plugged when it starts
            # (power_on: vif_plug.launch_plugged).
            vif_plug.plug(instance, [vif], only='before')
        guest.attach_device(xml)
        if running and late:
            vif_plug.plug(instance, [vif], only='after')
    except Exception:
        LOG.error('Attaching port %s failed; cleaning up', vif['id'],
                  instance=instance)
        if guest.interface_xml(iface.mac, inactive=True):
            _detach_quietly(guest, xml, iface.mac, instance)
        vif_plug.unplug(instance, [vif])
        raise
    _record(drv, instance, guest)
    LOG.info('Port %(port)s attached (%(type)s, MAC %(mac)s)%(live)s',
             {'port': vif['id'], 'type': iface.type, 'mac': iface.mac,
              'live': ' to the running guest' if running else ''},
             instance=instance)


def detach(drv, instance, vif):
    """Remove the port ``vif`` from ``instance`` (live and persistent),
    then unplug it from the host."""
    guest, machine = _hot_pluggable_guest(drv, instance)
    mac = (vif.get('address') or '').lower()
    xml = mac and (guest.interface_xml(mac, inactive=True) or
                   (guest.is_active() and guest.interface_xml(mac)))
    if not xml:
        # As nova's libvirt driver: gone already, nothing to detach.
        LOG.warning('Port %s is not attached to the domain; nothing to '
                    'detach', vif.get('id'), instance=instance)
    else:
        # The domain's own element: libvirt matches it by MAC and address.
        guest.detach_device(xml, mac, timeout=DETACH_TIMEOUT)
        _record(drv, instance, guest)
    vif_plug.unplug(instance, [vif])
    LOG.info('Port %s detached', vif.get('id'), instance=instance)


def _detach_quietly(guest, xml, mac, instance):
    try:
        guest.detach_device(xml, mac, timeout=DETACH_TIMEOUT)
    except Exception as e:
        LOG.warning('Could not remove the half-attached NIC %s: %s', mac, e,
                    instance=instance)


def _record(drv, instance, guest):
    # The instance directory keeps the definition's XML (for operators).
    drv._files(instance).write_domain_xml(guest.get_xml_desc(inactive=True))
