"""What an operator reads about a host and its Clear Containers:
``get_host_uptime``, ``get_diagnostics`` (the legacy dict, API < 2.48) and
``get_instance_diagnostics`` (``nova.objects.diagnostics.Diagnostics``,
API >= 2.48), with the same keys and units as nova's libvirt driver.

The counters come from libvirt through :class:`nova_clear.libvirt_guest.Guest`
(virDomainGetInfo, virDomainGetVcpus, virDomainBlockStats per disk target,
virDomainInterfaceStats per interface target, virDomainMemoryStats); the
devices from the live domain XML.  What libvirt cannot give (a domain that
stopped meanwhile, an interface without a host device) is left out, as
nova's libvirt driver does.
"""

import collections
import time
from xml.etree import ElementTree as ET

from oslo_utils import timeutils

from nova.compute import power_state
from nova.objects import diagnostics as diagnostics_obj
from nova.virt import configdrive

# Nova's HypervisorDriverField allows five names: ours drives QEMU through
# libvirt, so it is 'libvirt'; ``hypervisor`` says kvm or qemu (TCG).
DRIVER = 'libvirt'
HYPERVISOR_OS = 'linux'

Nic = collections.namedtuple('Nic', 'mac target')


def devices(xml_text):
    """(disk targets, [Nic]) of a domain's XML, in device order."""
    root = ET.fromstring(xml_text)
    disks = [d.find('target').get('dev')
             for d in root.findall('devices/disk')
             if d.find('target') is not None]
    nics = []
    for iface in root.findall('devices/interface'):
        mac = iface.find('mac')
        target = iface.find('target')
        nics.append(Nic(mac.get('address') if mac is not None else None,
                        target.get('dev') if target is not None else None))
    return disks, nics


def legacy(guest):
    """The legacy diagnostics dict (``cpu0_time``, ``vda_read``,
    ``<tap>_rx``, ``memory``, ``memory-<stat>``; memory in KiB), with
    nova's libvirt driver's keys."""
    disks, nics = devices(guest.get_xml_desc())
    out = {}
    for vcpu, ns in guest.vcpu_times() or ():
        out['cpu%d_time' % vcpu] = ns
    for dev in disks:
        stats = guest.block_stats(dev)
        if stats is None:
            continue
        for i, key in enumerate(('read_req', 'read', 'write_req', 'write',
                                 'errors')):
            out['%s_%s' % (dev, key)] = stats[i]
    for nic in nics:
        stats = nic.target and guest.interface_stats(nic.target)
        if not stats:
            continue
        for i, key in enumerate(('rx', 'rx_packets', 'rx_errors', 'rx_drop',
                                 'tx', 'tx_packets', 'tx_errors',
                                 'tx_drop')):
            out['%s_%s' % (nic.target, key)] = stats[i]
    out['memory'] = guest.info().max_mem_kib
    for key, value in (guest.memory_stats() or {}).items():
        out['memory-' + key] = value
    return out


def instance_diagnostics(guest, instance, virt_type):
    """nova.objects.diagnostics.Diagnostics of ``instance``'s domain.

    memory_details are MiB, as the compute API reference documents them
    (``used`` is the memory the domain has, its maximum: a Clear Container
    has no balloon); cpu_details give each vCPU's time in ns; uptime is
    seconds since the instance was launched (None before).
    """
    info = guest.info()
    launched_at = getattr(instance, 'launched_at', None)
    uptime = (int(timeutils.delta_seconds(
        timeutils.normalize_time(launched_at), timeutils.utcnow()))
        if launched_at else None)
    diags = diagnostics_obj.Diagnostics(
        state=power_state.STATE_MAP[guest.get_power_state()],
        driver=DRIVER,
        hypervisor=virt_type, hypervisor_os=HYPERVISOR_OS, uptime=uptime,
        config_drive=configdrive.required_by(instance))
    diags.memory_details = diagnostics_obj.MemoryDiagnostics(
        maximum=info.max_mem_kib // 1024, used=info.mem_kib // 1024)
    for vcpu, ns in guest.vcpu_times() or ():
        diags.add_cpu(id=vcpu, time=ns)
    disks, nics = devices(guest.get_xml_desc())
    for dev in disks:
        stats = guest.block_stats(dev)
        if stats is not None:
            diags.add_disk(read_requests=stats[0], read_bytes=stats[1],
                           write_requests=stats[2], write_bytes=stats[3],
                           errors_count=stats[4])
    for nic in nics:
        stats = nic.target and guest.interface_stats(nic.target)
        if not stats:
            diags.add_nic(mac_address=nic.mac)
            continue
        diags.add_nic(mac_address=nic.mac,
                      rx_octets=stats[0], rx_packets=stats[1],
                      rx_errors=stats[2], rx_drop=stats[3],
                      tx_octets=stats[4], tx_packets=stats[5],
                      tx_errors=stats[6], tx_drop=stats[7])
    return diags


def host_uptime(proc='/proc', now=None):
    """uptime(1)'s line ("10:21:33 up 3 days,  2:01,  load average: 0.00,
    0.01, 0.05"), which nova's libvirt driver returns by running
    ``uptime``; made from /proc/uptime and /proc/loadavg so that it needs
    neither procps nor utmp (hence no user count)."""
    with open('%s/uptime' % proc) as f:
        seconds = int(float(f.read().split()[0]))
    with open('%s/loadavg' % proc) as f:
        loads = f.read().split()[:3]
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    up = []
    if days:
        up.append('%d day%s' % (days, '' if days == 1 else 's'))
    up.append('%2d:%02d' % (hours, minutes) if hours
              else '%d min' % minutes)
    clock = time.strftime('%H:%M:%S', time.localtime(now))
    return ' %s up %s,  load average: %s\n' % (
        clock, ', '.join(up), ', '.join(loads))
