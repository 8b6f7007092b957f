"""The objects in the cloud: the admin's client configuration, the catalog
(service users, services, endpoints), the images, the flavors and the
provider network.  All idempotent."""

import json
import os
import textwrap

from tools.aio import hostnet
from tools.aio import process
from tools.aio import settings
from tools.aio import state

FLAVORS = {
    # name: (ram MiB, vcpus, disk GB, extra specs)
    'clear.tiny': (128, 1, 1, {}),
    'clear.tiny.cc': (128, 1, 1,
                      {'trait:CUSTOM_CLEAR_CONTAINERS': 'required'}),
    # what servers are resized to (tempest's flavor_ref_alt)
    'clear.small': (192, 2, 2, {}),
    # the q35 (PCI) variant, whose interfaces hot-plug
    'clear.tiny.pci': (128, 1, 1, {'clear:machine_type': 'q35'}),
    'clear.small.pci': (192, 2, 2, {'clear:machine_type': 'q35'}),
}
IMAGE = 'clear-busybox'
IMAGE_EXIT = 'clear-busybox-exit'
# the sample container image (busybox, built offline with buildah), as a
# service: it says hello and keeps running
IMAGE_CONTAINER = 'clear-busybox-container'
CONTAINER_COMMAND = ('echo "container says: $GREETING from $(pwd) as uid '
                     '$(id -u)"; cat /data/greeting; exec sleep 2147483647')
CONTAINER_LINE = 'container says: hello'
EXIT_COMMAND = ('init=/bin/sh -- -c '
                '"echo hello from a Clear Container; exit 3"')
# what the sample image prints on its console once its workload runs
WORKLOAD_LINE = 'disk-init: up on'
# tempest's images (nova_clear.sample_ssh): root logs in over SSH with the
# server's key pair; the disk image reads it from the config drive, which
# it declares mandatory
IMAGE_SSH = 'clear-ssh'
IMAGE_SSH_CONTAINER = 'clear-ssh-container'
SAMPLE_DIGEST = 'nova_clear_sample'
_conn = []

NET = hostnet.NET  # the provider network


def connection():
    """An admin connection (one per run, new after ``catalog``)."""
    if not _conn:
        import openstack
        _conn.append(openstack.connect(
            auth_url=settings.KEYSTONE_URL, username='admin',
            password=state.password('admin'), project_name='admin',
            user_domain_name='Default', project_domain_name='Default',
            region_name=settings.REGION,
            compute_api_version=settings.COMPUTE_MICROVERSION,
            identity_api_version='3'))
    return _conn[0]


def write_client_config():
    """clouds.yaml (cloud ``nova-clear-aio``) and admin-openrc."""
    auth = {'auth_url': settings.KEYSTONE_URL, 'username': 'admin',
            'password': state.password('admin'), 'project_name': 'admin',
            'user_domain_name': 'Default', 'project_domain_name': 'Default'}
    clouds = {'clouds': {settings.CLOUD: {
        'auth': auth, 'region_name': settings.REGION,
        'identity_api_version': 3,
        'compute_api_version': settings.COMPUTE_MICROVERSION}}}
    with open(os.open(settings.CLOUDS_YAML,
                      os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
              'w') as f:
        json.dump(clouds, f, indent=2)  # JSON is YAML
    with open(os.open(settings.ADMIN_OPENRC,
                      os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
              'w') as f:
        f.write(textwrap.dedent('''\
            export OS_CLOUD=%s
            export OS_CLIENT_CONFIG_FILE=%s
            export PATH=%s:$PATH
            ''' % (settings.CLOUD, settings.CLOUDS_YAML, settings.BIN)))


def cli_env():
    """The environment of an ``openstack`` command as the admin."""
    env = dict(os.environ)
    env['OS_CLOUD'] = settings.CLOUD
    env['OS_CLIENT_CONFIG_FILE'] = settings.CLOUDS_YAML
    return env


def catalog(entries):
    """Each ``(name, type, url)``: the service user ``name`` (admin and
    service in project ``service``), the service and its endpoints."""
    ident = connection().identity
    service_project = ident.find_project('service') or \
        ident.create_project(name='service', domain_id='default',
                             description='OpenStack services')
    admin_role = ident.find_role('admin')
    service_role = ident.find_role('service') or \
        ident.create_role(name='service')
    for name, stype, url in entries:
        u = ident.find_user(name, domain_id='default')
        if u is None:
            u = ident.create_user(name=name, password=state.password(name),
                                  domain_id='default')
        # an existing user keeps its password: changing it would revoke
        # the tokens the running services hold
        for role in (admin_role, service_role):
            ident.assign_project_role_to_user(service_project, u, role)
        svc = ident.find_service(name)
        if svc is None:
            svc = ident.create_service(name=name, type=stype)
        have = {e.interface: e for e in ident.endpoints(service_id=svc.id)}
        for interface in ('public', 'internal', 'admin'):
            e = have.get(interface)
            if e is None:
                ident.create_endpoint(service_id=svc.id, interface=interface,
                                      url=url, region_id=settings.REGION)
            elif e.url != url:
                ident.update_endpoint(e, url=url)
    # a new token, whose catalog has the endpoints just made
    _conn.clear()


def provider_network():
    """The shared flat provider network on ``NET.physnet`` and its
    IPv4 and IPv6 subnets (no DHCP, no RA)."""
    net_api = connection().network
    net = net_api.find_network(NET.network)
    if net is None:
        net = net_api.create_network(
            name=NET.network, shared=True, provider_network_type='flat',
            provider_physical_network=NET.physnet)
        process.say('created network %s (flat, physnet %s, shared)'
                    % (NET.network, NET.physnet))
    if (net.provider_network_type, net.provider_physical_network) != \
            ('flat', NET.physnet):
        raise process.Failure(
            'network %s exists as %s/%s, not flat/%s: delete it and start '
            'again' % (NET.network, net.provider_network_type,
                       net.provider_physical_network, NET.physnet))
    if not net.is_shared:
        net = net_api.update_network(net, shared=True)
    pool = NET.pool
    want = {'gateway_ip': NET.gateway, 'is_dhcp_enabled': False,
            'dns_nameservers': [NET.gateway],
            'allocation_pools': [{'start': pool[0], 'end': pool[1]}]}
    sub = net_api.find_subnet(NET.subnet, network_id=net.id)
    if sub is None:
        sub = net_api.create_subnet(
            name=NET.subnet, network_id=net.id, ip_version=4,
            cidr=NET.cidr, **want)
        process.say('created subnet %s %s, gateway %s, pool %s-%s, no DHCP'
                    % (NET.subnet, NET.cidr, NET.gateway,
                       pool[0], pool[1]))
    elif sub.cidr != NET.cidr:
        raise process.Failure(
            'subnet %s exists as %s, not %s: delete it and start again'
            % (NET.subnet, sub.cidr, NET.cidr))
    else:
        changes = {k: v for k, v in want.items() if getattr(sub, k) != v}
        if changes:
            sub = net_api.update_subnet(sub, **changes)
    sub6 = net_api.find_subnet(NET.subnet6, network_id=net.id)
    if sub6 is None:
        sub6 = net_api.create_subnet(
            name=NET.subnet6, network_id=net.id, ip_version=6,
            cidr=NET.cidr6, gateway_ip=NET.gateway6,
            is_dhcp_enabled=False)
        process.say('created subnet %s %s, gateway %s, no DHCP, no RA'
                    % (NET.subnet6, NET.cidr6,
                       NET.gateway6))
    elif sub6.cidr != NET.cidr6:
        raise process.Failure(
            'subnet %s exists as %s, not %s: delete it and start again'
            % (NET.subnet6, sub6.cidr, NET.cidr6))
    hostnet.record(network_id=net.id, subnet_id=sub.id, subnet6_id=sub6.id)


def sample_image():
    """The path of the sample disk image (a busybox root filesystem)."""
    from nova_clear import samples
    return samples.disk_image('fs')


def sample_container_image():
    """The path of the sample container image (``docker save`` format)."""
    from nova_clear import samples
    return samples.container_image('docker')


def _image_files():
    """{image name: (file maker, properties)}."""
    from nova_clear import sample_ssh
    return {
        IMAGE: (sample_image, {}),
        IMAGE_EXIT: (sample_image, {'os_command_line': EXIT_COMMAND}),
        IMAGE_CONTAINER: (sample_container_image, {
            'container_format': 'docker',
            'clear_cmd': json.dumps([CONTAINER_COMMAND]),
            'clear_user': 'root'}),
        # uploaded again when nova_clear.sample_ssh changed
        IMAGE_SSH: (sample_ssh.disk_image,
                    {'img_config_drive': 'mandatory',
                     SAMPLE_DIGEST: sample_ssh.digest()}),
        IMAGE_SSH_CONTAINER: (sample_ssh.container_image,
                              {'container_format': 'docker',
                               SAMPLE_DIGEST: sample_ssh.digest()}),
    }


def images_and_flavors():
    """The sample images and the flavors; returns ``{image name: id}``."""
    conn = connection()
    ids = {}
    for name, (make_file, props) in _image_files().items():
        img = None
        for i in conn.image.images(name=name):
            if i.status == 'active' and (
                    SAMPLE_DIGEST not in props or props[SAMPLE_DIGEST] ==
                    i.properties.get(SAMPLE_DIGEST)):
                img = i
            else:
                conn.image.delete_image(i, ignore_missing=True)
        if img is None:
            props = dict({'container_format': 'bare'}, **props)
            process.say('uploading image %s' % name)
            img = conn.image.create_image(
                name=name, filename=make_file(), disk_format='raw',
                visibility='public', wait=True, validate_checksum=False,
                **props)
        ids[name] = img.id
    for name, (ram, vcpus, disk, specs) in FLAVORS.items():
        f = conn.compute.find_flavor(name)
        if f is None:
            f = conn.compute.create_flavor(name=name, ram=ram, vcpus=vcpus,
                                           disk=disk, is_public=True)
        if specs:
            conn.compute.create_flavor_extra_specs(f, specs)
    state.update(images=ids, flavors=sorted(FLAVORS))
    return ids
