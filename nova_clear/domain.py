"""Pure functions: (instance, flavor, image meta, options) -> domain XML.

Nothing here touches libvirt, files or the network, so every branch is
unit-tested without a daemon.

A Clear Container is not a PC.  On ``machine='microvm'`` libvirt passes
``-nodefaults -no-user-config``: no firmware (the kernel is loaded
directly), no PCI bus, no USB, no graphics, no balloon.  Devices are
virtio-mmio: the root disk, network interfaces (virtio-net on a macvtap
or tap device), a random number generator; the console is the
machine's one ISA serial port, written to a file by virtlogd (and, with
nova's ``[serial_console]`` enabled, a TCP server for nova-serialproxy
too: see nova_clear/serial_console.py).

``machine='q35'`` is the PCI variant (:mod:`nova_clear.domain_pci`):
the tiny qboot firmware instead of SeaBIOS, virtio-pci devices and spare
PCIe root ports, so that NICs can be hot-plugged.
"""

import dataclasses
from xml.etree import ElementTree as ET

from nova_clear import domain_pci
from nova_clear import exception as clear_exc

NS_URI = 'https://opendev.org/x/nova-clear/instance/1.0'
NS_PREFIX = 'nova-clear'
# Under TCG the guest's early TSC calibration against a slow emulated PIT
# may never finish; telling the kernel the frequency skips it.
TCG_TSC_KHZ = 2000000

ET.register_namespace(NS_PREFIX, NS_URI)


@dataclasses.dataclass(frozen=True)
class BootConfig:
    """Host-side facts the XML needs besides the Nova objects."""

    virt_type: str          # 'kvm' or 'qemu'
    machine_type: str       # 'microvm' or 'q35'
    kernel: str
    initrd: str
    acpi: bool              # the guest kernel understands ACPI
    disk_path: str
    disk_format: str        # format of disk_path (our overlay: qcow2)
    console_log: str
    cpu_mode: str = 'host-passthrough'
    tb_cache_mb: int = 32
    disk_cache: str = 'none'
    qboot_firmware: str = '/usr/share/qemu/qboot.rom'
    cmdline_extra: str = ''
    # Container images: disk_path is the shared read-only root filesystem
    # and this the instance's writable disk (overlay upper layer).
    upper_disk_path: str = None
    # Ephemeral and swap disks (nova_clear.local_disks), (path, format)
    # pairs attached read-write after the instance's own disks and before
    # the config drive, as nova's libvirt driver orders them (root,
    # ephemerals, swap, config drive).
    local_disks: tuple = ()
    # Config drive (ISO 9660), attached read-only after the other disks.
    config_drive_path: str = None
    # The nova-compute host owning the domain (several may share libvirtd).
    host: str = ''
    # Network devices (nova_clear.vif.Interface) and the agent's network
    # arguments (nova_clear.guest.network.cmdline_args).
    interfaces: tuple = ()
    network_args: tuple = ()
    # Rescue (nova_clear.rescue): more read-write disks, (path, format)
    # pairs attached after the config drive, and the device the agent boots
    # from in disk-image mode when it is not /dev/vda (stable device
    # rescue: the rescue disk comes after the instance's own disks).
    extra_disks: tuple = ()
    root_dev: str = None
    # Disk I/O limits, ((iotune element, value), ...) from disk_iotune():
    # on every disk of the instance but the config drive.  On q35 they are
    # the disks' <iotune>; on microvm our metadata's <iotune>, which
    # libvirt_guest applies after each start (see _iotune_metadata).
    iotune: tuple = ()
    # The interactive serial console: (host, port) QEMU listens on for
    # nova-serialproxy (nova_clear.serial_console); None: the log only.
    serial_tcp: tuple = None
    # q35: spare pcie-root-port controllers for hot-plugged NICs.
    pcie_ports: int = 0


def container_mode(boot):
    """The agent assembles a container root (vda image, vdb writable)."""
    return bool(boot.upper_disk_path) and not boot.root_dev


# What each disk is to the instance (_disks).
ROOT, LOCAL, CONFIG, EXTRA = 'root', 'local', 'config', 'extra'


def _disks(boot):
    """[(dev, path, format, readonly, role)] in the order the guest sees
    them (probe order: vda, vdb, ...): the instance's own disks (ROOT),
    its ephemeral and swap disks (LOCAL), the config drive (CONFIG), the
    rescue's extra disks (EXTRA)."""
    disks = []
    if boot.upper_disk_path:
        disks.append((boot.disk_path, 'raw', True, ROOT))
        disks.append((boot.upper_disk_path, 'raw', False, ROOT))
    else:
        disks.append((boot.disk_path, boot.disk_format, False, ROOT))
    disks.extend((path, fmt, False, LOCAL) for path, fmt in boot.local_disks)
    if boot.config_drive_path:
        disks.append((boot.config_drive_path, 'raw', True, CONFIG))
    disks.extend((path, fmt, False, EXTRA) for path, fmt in boot.extra_disks)
    return [(_dev_name(i),) + d for i, d in enumerate(disks)]


def _dev_name(index):
    # vda..vdz, then vdaa.. as the kernel names them
    name = ''
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        name = chr(ord('a') + rem) + name
    return 'vd' + name


def disk_devices(boot):
    """[(dev, path, format, readonly)] in the order the guest sees them
    (virtio-mmio probe order: vda, vdb, ...)."""
    return [d[:4] for d in _disks(boot)]


def _devices_of(boot, *roles):
    return tuple(d[0] for d in _disks(boot) if d[4] in roles)


# The flavor extra specs nova's libvirt driver turns into <iotune>
# ("quota:disk_" + name; libvirt's element of the same name).
IOTUNE_SPECS = ('read_bytes_sec', 'read_iops_sec', 'write_bytes_sec',
                'write_iops_sec', 'total_bytes_sec', 'total_iops_sec')


def disk_iotune(flavor):
    """BootConfig.iotune from a flavor's extra specs: the
    ``quota:disk_*`` limits that are set and not 0 (0: no limit), in
    IOTUNE_SPECS order.  InvalidFlavorDiskQuota for a value that is not a
    non-negative integer, or a total limit combined with a read or write
    limit of the same metric (QEMU refuses the pair)."""
    try:
        return _iotune((flavor.extra_specs
                        if flavor.obj_attr_is_set('extra_specs') else None)
                       or {})
    except ValueError as e:
        raise clear_exc.InvalidFlavorDiskQuota(flavor=flavor.name, reason=e)


def _iotune(extra_specs):
    limits = {}
    for name in IOTUNE_SPECS:
        raw = extra_specs.get('quota:disk_' + name)
        if raw is None:
            continue
        try:
            value = int(str(raw).strip())
        except ValueError:
            value = -1
        if value < 0:
            raise ValueError('quota:disk_%s must be a non-negative integer, '
                             'not %r' % (name, raw))
        if value:
            limits[name] = value
    for metric in ('bytes', 'iops'):
        if 'total_%s_sec' % metric in limits and (
                'read_%s_sec' % metric in limits or
                'write_%s_sec' % metric in limits):
            raise ValueError('quota:disk_total_%s_sec cannot be combined '
                             'with quota:disk_read_%s_sec or '
                             'quota:disk_write_%s_sec' % ((metric,) * 3))
    return tuple((name, limits[name]) for name in IOTUNE_SPECS
                 if name in limits)


def kernel_cmdline(instance, image_meta, boot):
    """The guest kernel command line, read by the agent (guest/init.sh)."""
    args = ['console=ttyS0', 'quiet', 'panic=1']
    if boot.virt_type == 'qemu':
        args.append('tsc_early_khz=%d' % TCG_TSC_KHZ)
    args.append('nova_clear.uuid=%s' % instance.uuid)
    if container_mode(boot):
        args.append('nova_clear.mode=container')
    if boot.root_dev:
        args.append('nova_clear.root=%s' % boot.root_dev)
    if boot.config_drive_path:
        # after the instance's own, ephemeral and swap disks
        args.append('nova_clear.configdrive=/dev/%s' %
                    _devices_of(boot, CONFIG)[0])
    hostname = getattr(instance, 'hostname', None)
    if hostname:
        args.append('nova_clear.hostname=%s' % hostname)
    args.extend(boot.network_args)
    if boot.cmdline_extra:
        args.append(boot.cmdline_extra.strip())
    props = image_meta.properties
    user = props.get('os_command_line') if 'os_command_line' in props \
        else None
    if user and not container_mode(boot):
        # The image's own arguments come last: "init=/app -- args" reaches
        # the agent as the workload and its argv.
        args.append(user.strip())
    return ' '.join(args)


def _sub(parent, tag, text=None, **attrs):
    el = ET.SubElement(parent, tag, {k.rstrip('_'): str(v)
                                     for k, v in attrs.items()})
    if text is not None:
        el.text = str(text)
    return el


def _mmio(parent, boot):
    if boot.machine_type == 'microvm':
        # libvirt needs an explicit virtio-mmio address on microvm, or
        # defining fails with "No PCI buses available".
        _sub(parent, 'address', type='virtio-mmio')


def _disk(devices, boot, path, fmt, dev, readonly=False, iotune=True):
    disk = _sub(devices, 'disk', type='file', device='disk')
    _sub(disk, 'driver', name='qemu', type=fmt, cache=boot.disk_cache,
         **({} if readonly else {'discard': 'unmap'}))
    _sub(disk, 'source', file=path)
    _sub(disk, 'target', dev=dev, bus='virtio')
    if iotune and boot.iotune and boot.machine_type != 'microvm':
        tune = _sub(disk, 'iotune')
        for name, value in boot.iotune:
            _sub(tune, name, value)
    if readonly:
        # Shared by every instance of the image.
        _sub(disk, 'readonly')
    _mmio(disk, boot)


def _interface(devices, boot, iface):
    if iface.type not in ('direct', 'ethernet', 'bridge'):
        raise ValueError('unsupported interface type %r' % iface.type)
    el = _sub(devices, 'interface', type=iface.type)
    _sub(el, 'mac', address=iface.mac)
    if iface.type == 'direct':
        # libvirt creates the macvtap device on start and deletes it on
        # stop.
        _sub(el, 'source', dev=iface.source_dev, mode=iface.source_mode)
    elif iface.type == 'bridge':
        # libvirt creates the tap and adds it to the bridge (for an
        # openvswitch virtualport: as an OVS port carrying the Neutron
        # port's iface-id, which the OVS agent or ovn-controller binds).
        _sub(el, 'source', bridge=iface.source_bridge)
        if iface.virtualport:
            vport = _sub(el, 'virtualport', type=iface.virtualport)
            _sub(vport, 'parameters', interfaceid=iface.interface_id)
    if iface.type == 'ethernet' and not iface.managed:
        # os-vif created the tap: libvirt opens it and leaves it be.
        _sub(el, 'target', dev=iface.target_dev, managed='no')
    elif iface.target_dev:
        # The name os-vif plugged into OVS (ethernet) or that Neutron
        # expects (tapXXXXXXXX-XX); libvirt creates it and deletes it on
        # stop.
        _sub(el, 'target', dev=iface.target_dev)
    _sub(el, 'model', type='virtio')
    if iface.mtu and iface.type != 'direct':
        # The host end's MTU (libvirt sets it on the tap).  No <mtu> on
        # type='direct': libvirt refuses it ("not supported yet"); the
        # macvtap device takes its lower device's MTU.  Inside the guest
        # the agent sets the network's MTU in any case
        # (nova_clear.if=MAC,MTU).
        _sub(el, 'mtu', size=iface.mtu)
    _mmio(el, boot)


def _serial(devices, boot):
    # append: the log survives reboots and restarts of QEMU; virtlogd
    # writes it and rotates it at its max_size.
    if boot.serial_tcp:
        # QEMU listens (raw TCP, not waiting for a client: output nobody
        # reads is dropped, the guest never blocks) and logs what the
        # guest writes, as nova's libvirt driver does for its serial
        # console.
        host, port = boot.serial_tcp
        serial = _sub(devices, 'serial', type='tcp')
        _sub(serial, 'source', mode='bind', host=host, service=port)
        _sub(serial, 'protocol', type='raw')
        _sub(serial, 'log', file=boot.console_log, append='on')
    else:
        serial = _sub(devices, 'serial', type='file')
        _sub(serial, 'source', path=boot.console_log, append='on')
    _sub(serial, 'target', port=0)


def _no_default_devices(devices):
    # libvirt adds a USB controller (which needs PCI: "No PCI buses
    # available" on microvm) and a balloon unless told not to.
    _sub(devices, 'controller', type='usb', model='none')
    _sub(devices, 'memballoon', model='none')


def _limited_disks(boot):
    """Targets of the disks the I/O limits apply to: the instance's own,
    ephemeral and swap disks."""
    return _devices_of(boot, ROOT, LOCAL)


def _iotune_metadata(inst, boot):
    # libvirt (9.0 and later as of 11.x) finds a virtio disk's throttling
    # at the QOM path /machine/peripheral/<alias>/virtio-backend, which
    # only virtio-pci devices have: on microvm's virtio-mmio disks a
    # domain with <iotune> does not start ("Device ... not found") and
    # virDomainSetBlockIoTune fails.  QEMU itself throttles them, given
    # the device's id (libvirt_guest.Guest.launch does so).
    if not boot.iotune or boot.machine_type != 'microvm':
        return
    el = ET.SubElement(inst, '{%s}iotune' % NS_URI)
    el.set('disks', ' '.join(_limited_disks(boot)))
    for name, value in boot.iotune:
        el.set(name, str(value))


def iotune_of_metadata(element_xml):
    """(disk targets, {iotune name: value}) our metadata element asks
    libvirt_guest to apply after a start; None if it asks nothing."""
    try:
        inst = ET.fromstring(element_xml)
    except ET.ParseError:
        return None
    for child in inst:
        if child.tag.rsplit('}', 1)[-1] == 'iotune':
            limits = {k: int(v) for k, v in child.attrib.items()
                      if k in IOTUNE_SPECS}
            return tuple(child.get('disks', '').split()), limits
    return None


def _metadata(root, instance, flavor, image_meta, host, boot):
    meta = _sub(root, 'metadata')
    inst = ET.SubElement(meta, '{%s}instance' % NS_URI)
    ET.SubElement(inst, '{%s}host' % NS_URI).set('name', host)
    ET.SubElement(inst, '{%s}name' % NS_URI).text = \
        getattr(instance, 'display_name', None) or ''
    fl = ET.SubElement(inst, '{%s}flavor' % NS_URI)
    fl.set('name', flavor.name)
    fl.set('vcpus', str(flavor.vcpus))
    fl.set('memory_mb', str(flavor.memory_mb))
    fl.set('root_gb', str(flavor.root_gb))
    img = ET.SubElement(inst, '{%s}image' % NS_URI)
    img.set('uuid', str(image_meta.id) if 'id' in image_meta else '')
    owner = ET.SubElement(inst, '{%s}owner' % NS_URI)
    owner.set('project', str(getattr(instance, 'project_id', '') or ''))
    owner.set('user', str(getattr(instance, 'user_id', '') or ''))
    _iotune_metadata(inst, boot)


def domain_xml(instance, flavor, image_meta, boot):
    """Return the libvirt domain XML (str) of a Clear Container."""
    if boot.virt_type not in ('kvm', 'qemu'):
        raise ValueError('virt_type must be kvm or qemu, not %r'
                         % boot.virt_type)
    if boot.machine_type not in ('microvm', 'q35'):
        raise ValueError('machine_type must be microvm or q35, not %r'
                         % boot.machine_type)
    root = ET.Element('domain', type=boot.virt_type)
    _sub(root, 'name', instance.name)
    _sub(root, 'uuid', instance.uuid)
    _metadata(root, instance, flavor, image_meta, boot.host, boot)
    _sub(root, 'memory', flavor.memory_mb, unit='MiB')
    _sub(root, 'vcpu', flavor.vcpus, placement='static')

    os_el = _sub(root, 'os')
    _sub(os_el, 'type', 'hvm', arch='x86_64', machine=boot.machine_type)
    if boot.machine_type == 'q35':
        _sub(os_el, 'loader', boot.qboot_firmware, type='rom',
             readonly='yes')
    _sub(os_el, 'kernel', boot.kernel)
    _sub(os_el, 'initrd', boot.initrd)
    _sub(os_el, 'cmdline', kernel_cmdline(instance, image_meta, boot))

    features = _sub(root, 'features')
    if boot.acpi:
        # ACPI gives a kernel that has it the power button (graceful
        # shutdown) and a real power-off; without it the guest can only
        # halt and virtio-mmio devices come from the command line.
        _sub(features, 'acpi')
    if boot.virt_type == 'qemu' and boot.tb_cache_mb:
        tcg = _sub(features, 'tcg')
        _sub(tcg, 'tb-cache', boot.tb_cache_mb, unit='MiB')
    if boot.virt_type == 'kvm' and boot.cpu_mode != 'none':
        _sub(root, 'cpu', mode=boot.cpu_mode)
    _sub(root, 'clock', offset='utc')
    _sub(root, 'on_poweroff', 'destroy')
    _sub(root, 'on_reboot', 'restart')
    _sub(root, 'on_crash', 'destroy')

    devices = _sub(root, 'devices')
    for dev, path, fmt, readonly in disk_devices(boot):
        _disk(devices, boot, path, fmt, dev, readonly=readonly,
              iotune=path != boot.config_drive_path)

    for iface in boot.interfaces:
        _interface(devices, boot, iface)

    _serial(devices, boot)

    rng = _sub(devices, 'rng', model='virtio')
    _sub(rng, 'backend', '/dev/urandom', model='random')
    _mmio(rng, boot)

    if boot.machine_type == 'q35':
        domain_pci.root_ports(
            devices, len(devices.findall('disk')) +
            len(devices.findall('interface')) + 1, boot.pcie_ports)
    _no_default_devices(devices)
    return ET.tostring(root, encoding='unicode')


def interface_xml(iface, machine_type):
    """The ``<interface>`` of one NIC alone (hot-plug, detach), as
    domain_xml() describes it for ``machine_type``."""
    holder = ET.Element('devices')
    _interface(holder, _MachineOnly(machine_type), iface)
    return ET.tostring(holder[0], encoding='unicode')


@dataclasses.dataclass(frozen=True)
class _MachineOnly:
    machine_type: str


def probe_xml(name, virt_type, kernel, initrd, console_log, acpi,
              machine_type='microvm', cpu_mode='none'):
    """A disk-less domain that boots the agent in probe mode.

    The agent prints ``nova-clear: probe ok`` and powers off at once; it is
    how ``virt_type=auto`` learns whether KVM really boots the kernel.
    """
    root = ET.Element('domain', type=virt_type)
    _sub(root, 'name', name)
    _sub(root, 'memory', 128, unit='MiB')
    _sub(root, 'vcpu', 1)
    os_el = _sub(root, 'os')
    _sub(os_el, 'type', 'hvm', arch='x86_64', machine=machine_type)
    _sub(os_el, 'kernel', kernel)
    _sub(os_el, 'initrd', initrd)
    args = 'console=ttyS0 quiet panic=1 nova_clear.probe=1'
    if virt_type == 'qemu':
        args += ' tsc_early_khz=%d' % TCG_TSC_KHZ
    _sub(os_el, 'cmdline', args)
    features = _sub(root, 'features')
    if acpi:
        _sub(features, 'acpi')
    if virt_type == 'kvm' and cpu_mode != 'none':
        _sub(root, 'cpu', mode=cpu_mode)
    _sub(root, 'on_poweroff', 'destroy')
    _sub(root, 'on_reboot', 'destroy')
    _sub(root, 'on_crash', 'destroy')
    devices = _sub(root, 'devices')
    serial = _sub(devices, 'serial', type='file')
    _sub(serial, 'source', path=console_log)
    _no_default_devices(devices)
    return ET.tostring(root, encoding='unicode')


def instance_uuid_from_metadata(xml_text):
    """True if a domain's XML carries our metadata element."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return False
    return root.find('metadata/{%s}instance' % NS_URI) is not None


def host_of_metadata(element_xml):
    """The owning host named in our metadata element (as libvirt returns
    it from virDomainGetMetadata), or None."""
    try:
        inst = ET.fromstring(element_xml)
    except ET.ParseError:
        return None
    for child in inst:
        if child.tag.rsplit('}', 1)[-1] == 'host':
            return child.get('name')
    return None
