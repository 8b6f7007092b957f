"""Nova's network metadata -> the guest agent's kernel command line.

The agent (guest/init.sh) configures every interface statically before the
workload starts: no DHCP client, no wait.  Everything it needs is in Nova's
``network_info`` - the same facts Nova writes to a config drive's
``network_data.json`` - and travels on the kernel command line, which every
Clear Container has (a config drive is optional)::

    nova_clear.if=MAC,MTU               one per interface, in order
    nova_clear.ip=MAC,ADDRESS/PREFIX    one per fixed IP (IPv4 and IPv6)
    nova_clear.rt=MAC,DEST/PREFIX,VIA   routes; DEST 0.0.0.0/0 or ::/0 is
                                        the subnet's gateway
    nova_clear.dns=ADDRESS              name servers, up to three

Interfaces are matched by MAC address, so the guest's probe order does not
matter.  Pure functions; unit-tested without a guest.
"""

import netaddr

# x86's COMMAND_LINE_SIZE is 2048 bytes including the terminating NUL.
MAX_CMDLINE = 2047
MAX_DNS = 3


class CommandLineTooLong(ValueError):
    """The driver raises it to Nova as ``PortNotPluggable``."""


def _prefixed(address, cidr):
    return '%s/%d' % (address, netaddr.IPNetwork(cidr).prefixlen)


def cmdline_args(network_info):
    """The agent's network arguments for ``network_info`` (a list)."""
    args, dns = [], []
    for vif in network_info or ():
        mac = vif['address'].lower()
        network = vif.get('network') or {}
        mtu = (network.get('meta') or {}).get('mtu')
        args.append('nova_clear.if=%s,%s' % (mac, int(mtu) if mtu else ''))
        for subnet in network.get('subnets') or ():
            cidr = subnet.get('cidr')
            if not cidr:
                continue
            fixed = [ip['address'] for ip in subnet.get('ips') or ()
                     if ip.get('type', 'fixed') == 'fixed']
            if not fixed:
                continue
            for address in fixed:
                args.append('nova_clear.ip=%s,%s' % (
                    mac, _prefixed(address, cidr)))
            gateway = (subnet.get('gateway') or {}).get('address')
            if gateway:
                default = '::/0' if netaddr.IPNetwork(cidr).version == 6 \
                    else '0.0.0.0/0'
                args.append('nova_clear.rt=%s,%s,%s' % (mac, default,
                                                        gateway))
            for route in subnet.get('routes') or ():
                via = (route.get('gateway') or {}).get('address')
                if route.get('cidr') and via:
                    net = netaddr.IPNetwork(route['cidr'])
                    args.append('nova_clear.rt=%s,%s/%d,%s' % (
                        mac, net.network, net.prefixlen, via))
            for server in subnet.get('dns') or ():
                address = server.get('address')
                if address and address not in dns:
                    dns.append(address)
    args.extend('nova_clear.dns=%s' % a for a in dns[:MAX_DNS])
    return args


def check_length(cmdline):
    """The whole command line must fit the kernel's buffer, or the guest
    would silently lose its tail (the workload's arguments)."""
    if len(cmdline.encode()) > MAX_CMDLINE:
        raise CommandLineTooLong(
            'the guest kernel command line is %d bytes, more than the %d '
            'the kernel accepts (too many ports, addresses or routes)'
            % (len(cmdline.encode()), MAX_CMDLINE))
