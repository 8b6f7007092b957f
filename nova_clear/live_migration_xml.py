"""Pure: the domain XML a Clear Container gets at a live migration's
destination, from the source's migratable XML.

The destination reports where its files are (its instance directory,
image cache and guest assets: :func:`nova_clear.live_migration.dest_facts`);
every path of the source's XML below the source's instance directory or
image cache, and its kernel and initramfs, become the destination's (the
disks, the qcow2 overlay's ``<backingStore>`` chain, the serial console's
log); our metadata names the destination's nova-compute host; each macvtap
interface gets the source device of the port's destination binding, and
the serial console's TCP port the destination's.  Nothing else changes:
libvirt checks that the guest ABI is the same.
"""

from xml.etree import ElementTree as ET

from nova_clear import domain as domain_xml


def _rewrite(value, prefixes, exact):
    if value in exact:
        return exact[value]
    for src, dst in prefixes:
        if value == src or value.startswith(src.rstrip('/') + '/'):
            return dst.rstrip('/') + value[len(src.rstrip('/')):]
    return value


def disks_of(xml):
    """[(dev, path, format, readonly)] of the domain's file disks."""
    root = ET.fromstring(xml)
    out = []
    for disk in root.findall('devices/disk'):
        src = disk.find('source')
        if src is None or src.get('file') is None:
            continue
        drv = disk.find('driver')
        out.append((disk.find('target').get('dev'), src.get('file'),
                    drv.get('type') if drv is not None else 'raw',
                    disk.find('readonly') is not None))
    return out


def writable_disks(xml):
    """The targets of the disks block migration copies (the read-only
    ones, the container's root filesystem and the config drive, are
    prepared at the destination beforehand)."""
    return [dev for dev, _path, _fmt, readonly in disks_of(xml)
            if not readonly]


def destination_xml(xml, prefixes, exact, host, interfaces=(),
                    serial_tcp=None):
    """``xml`` (the source's VIR_DOMAIN_XML_MIGRATABLE) for the
    destination.

    ``prefixes``: [(source dir, destination dir)]; ``exact``: {source
    file: destination file} (kernel, initramfs); ``host``: the
    destination's nova-compute host; ``interfaces``: the destination's
    :class:`nova_clear.vif.Interface` of each port (by MAC);
    ``serial_tcp``: (host, port) the destination's serial console
    listens on, or None to keep it."""
    root = ET.fromstring(xml)
    os_el = root.find('os')
    for tag in ('kernel', 'initrd'):
        el = os_el.find(tag) if os_el is not None else None
        if el is not None and el.text:
            el.text = _rewrite(el.text, prefixes, exact)
    for el in root.iter('source'):
        for attr in ('file', 'path'):
            if el.get(attr):
                el.set(attr, _rewrite(el.get(attr), prefixes, exact))
    for el in root.iter('log'):
        if el.get('file'):
            el.set('file', _rewrite(el.get('file'), prefixes, exact))
    meta = root.find('metadata/{%s}instance/{%s}host' % (
        domain_xml.NS_URI, domain_xml.NS_URI))
    if meta is not None:
        meta.set('name', host)
    by_mac = {i.mac.lower(): i for i in interfaces}
    for el in root.findall('devices/interface'):
        mac = el.find('mac')
        iface = by_mac.get(mac.get('address', '').lower()) \
            if mac is not None else None
        if iface is None or el.get('type') != 'direct' or \
                iface.type != 'direct':
            continue
        src = el.find('source')
        src.set('dev', iface.source_dev)
        src.set('mode', iface.source_mode)
    if serial_tcp:
        for serial in root.findall('devices/serial'):
            src = serial.find('source')
            if serial.get('type') == 'tcp' and src is not None:
                src.set('host', serial_tcp[0])
                src.set('service', str(serial_tcp[1]))
    return ET.tostring(root, encoding='unicode')
