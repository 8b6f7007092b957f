"""The PCI variant of a Clear Container, and which variant an instance gets
(pure functions, unit-tested without a daemon).

Two machine variants boot the same kernel and agent the same way (direct
kernel boot, no SeaBIOS):

``microvm`` (the default)
    virtio-mmio devices, no PCI bus.  The fastest to boot, but nothing
    can be hot-plugged: a NIC exists from start to power-off, so Nova's
    interface attach and detach are refused for it.

``q35`` (the PCI variant)
    QEMU's q35 with the tiny qboot firmware as its ROM (libvirt's
    ``<loader type='rom'>``, which becomes QEMU's ``-bios``), virtio
    devices on PCI Express (virtio-blk-pci, virtio-net-pci,
    virtio-rng-pci) and ``[clear] num_pcie_ports`` spare
    ``pcie-root-port`` controllers, each one slot a NIC can be
    hot-plugged into (QEMU signals it through ACPI, the guest kernel's
    ``acpiphp`` driver scans the slot;
    libvirt puts each boot device in a root port of its own, so the
    domain gets one root port per boot device plus the spares).  Costs
    some boot time and memory: doc/source/machine-variants.rst.

An instance gets q35 when its flavor's ``clear:machine_type`` extra spec
or its image's ``hw_machine_type`` property (the property nova's libvirt
driver reads, in nova.virt.libvirt.utils.get_machine_type) says ``q35``
or ``pc-q35[-VERSION]``, and microvm when they say ``microvm``; else
``[clear] machine_type``.  Nova has no flavor extra spec for the machine
type (its API validation rejects ``hw:machine_type`` as unknown in the
``hw`` namespace), hence ours in the ``clear`` namespace.  Any other
value (``pc``, ``pc-i440fx-*``, ``virt``, ...) is refused before anything
is created: a Clear Container never boots a PC with a BIOS.
"""

import os
from xml.etree import ElementTree as ET

from nova import exception
from nova import objects

from nova_clear.i18n import _

MICROVM = 'microvm'
Q35 = 'q35'
VARIANTS = (MICROVM, Q35)
FLAVOR_SPEC = 'clear:machine_type'
IMAGE_PROPERTY = 'hw_machine_type'


class UnknownMachineType(ValueError):
    """The driver raises it to Nova as ``InstanceDeployFailure``."""


def variant_of(value):
    """``microvm`` or ``q35`` for a machine type name (as an image, a
    flavor or libvirt's live XML spell it: ``q35``, ``pc-q35-7.2``,
    ``microvm``); UnknownMachineType for any other."""
    name = str(value).strip().lower()
    if name == MICROVM:
        return MICROVM
    if name == Q35 or name.startswith('pc-q35'):
        return Q35
    raise UnknownMachineType(name)


def _flavor_spec(flavor):
    specs = (flavor.extra_specs
             if flavor.obj_attr_is_set('extra_specs') else None) or {}
    return specs.get(FLAVOR_SPEC)


def machine_type(flavor, image_meta, default=MICROVM):
    """The variant of an instance (see the module's docstring).  Raises
    UnknownMachineType, naming the source, for a value that is neither,
    and when the flavor and the image ask for different variants."""
    asked = []
    for source, value in (
            ('flavor extra spec %s' % FLAVOR_SPEC, _flavor_spec(flavor)),
            ('image property %s' % IMAGE_PROPERTY,
             image_meta.properties.get(IMAGE_PROPERTY)
             if IMAGE_PROPERTY in image_meta.properties else None)):
        if value in (None, ''):
            continue
        try:
            asked.append((source, variant_of(value)))
        except UnknownMachineType:
            raise UnknownMachineType(
                _('%(source)s asks for machine type %(value)r; Clear '
                  'Containers boot "microvm" (no PCI, no hot-plug) or '
                  '"q35" / "pc-q35*" (PCI, NIC hot-plug)') %
                {'source': source, 'value': value})
    if len({v for _s, v in asked}) > 1:
        raise UnknownMachineType(
            _('the %(s1)s asks for %(v1)s but the %(s2)s for %(v2)s') %
            {'s1': asked[0][0], 'v1': asked[0][1],
             's2': asked[1][0], 'v2': asked[1][1]})
    return asked[0][1] if asked else variant_of(default)


def instance_machine_type(instance, image_meta=None, default=MICROVM):
    """:func:`machine_type` of an instance (``image_meta``: the image it
    boots, by default the one recorded in the instance), or
    InstanceDeployFailure, before anything is created."""
    try:
        return machine_type(
            instance.flavor,
            image_meta or objects.ImageMeta.from_instance(instance), default)
    except UnknownMachineType as e:
        raise exception.InstanceDeployFailure(reason=str(e))


def check_assets(machine, assets):
    """InstanceDeployFailure if the guest assets cannot boot ``machine``
    (q35 needs virtio-pci: assets built by an older
    nova-clear-build-guest have none, and the guest would not find its
    disk)."""
    if machine == Q35 and not assets.virtio_pci:
        raise exception.InstanceDeployFailure(reason=_(
            'the guest kernel %(release)s in %(path)s has no virtio-pci '
            'driver, which the q35 variant needs; rebuild the guest assets '
            '(nova-clear-build-guest) or boot microvm') % {
            'release': assets.kernel_release,
            'path': os.path.dirname(assets.kernel)})


def supports_hotplug(machine):
    """True for the variant whose NICs can be attached and detached live
    (``machine``: the domain's machine as libvirt reports it)."""
    try:
        return variant_of(machine) == Q35
    except UnknownMachineType:
        return False


def root_ports(devices, boot_devices, spare):
    """Append the ``pcie-root`` and ``boot_devices + spare``
    ``pcie-root-port`` controllers to ``devices``: libvirt places each
    virtio-pci boot device in a root port (it adds one if none is free),
    so ``spare`` stay free for hot-plug.  (The root first: libvirt numbers
    PCI controllers in order and index 0 must be the root.)"""
    ET.SubElement(devices, 'controller', type='pci', model='pcie-root')
    for _n in range(boot_devices + spare):
        ET.SubElement(devices, 'controller', type='pci',
                      model='pcie-root-port')


def not_hot_pluggable(instance, machine):
    """The message of AttachInterfaceNotSupported for a microvm domain."""
    return _('Instance %(uuid)s is a Clear Container of the %(variant)s '
             'variant (machine %(machine)s), which has no hot-plug bus: '
             'its network interfaces are fixed at boot. Interfaces can be '
             'attached and detached on the PCI variant: boot it from a '
             'flavor with extra spec %(spec)s=q35 or an image with '
             'property %(prop)s=q35 (rebuild or resize to one), or change '
             'the ports by rebuilding.') % {
        'uuid': instance.uuid, 'variant': MICROVM, 'machine': machine,
        'spec': FLAVOR_SPEC, 'prop': IMAGE_PROPERTY}
