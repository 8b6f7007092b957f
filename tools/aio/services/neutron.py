"""Neutron: the API under uWSGI on :9696 (ML2, mechanism driver macvtap,
MariaDB), ``neutron-rpc-server`` (the uWSGI API serves no RPC: agents
report to it) and the macvtap agent on the host network's ``PHYS_IF``
(``tools/macvtap_agent.py``: neutron's agent, its privsep fixed)."""

import datetime
import os
import socket
import subprocess
import time

from tools.aio import cloud
from tools.aio import conf
from tools.aio import hostnet
from tools.aio import process
from tools.aio.services import infra
from tools.aio import settings
from tools.aio import state

PORT = 9696
DIR = settings.etc('neutron')
CONF = os.path.join(DIR, 'neutron.conf')
ML2_CONF = os.path.join(DIR, 'plugins', 'ml2', 'ml2_conf.ini')
AGENT_CONF = os.path.join(DIR, 'plugins', 'ml2', 'macvtap_agent.ini')
PASTE = os.path.join(DIR, 'api-paste.ini')
MACVTAP_AGENT_TYPE = 'Macvtap agent'
PROCESSES = ['neutron', 'neutron-rpc-server', 'neutron-macvtap-agent']
PORTS = {'neutron': PORT}
CONFIG_FILES = {'neutron': [CONF, ML2_CONF, PASTE],
                'neutron-rpc-server': [CONF, ML2_CONF],
                'neutron-macvtap-agent': [CONF, AGENT_CONF]}
CATALOG = [('neutron', 'network', 'http://%s:%d' % (settings.HOST, PORT))]
# its RPC server and agent talk through RabbitMQ
NEEDS = (infra,)
SERVER_ARGS = ['--config-file', CONF, '--config-file', ML2_CONF]
# the VLAN ids of project networks (tempest makes its own networks)
VLAN_RANGE = (100, 199)
# the macvtap agent's start, when this run started it: (UTC start time,
# monotonic time)
_agent_started = None


def vlan_capable():
    """Whether this host's kernel makes 802.1Q VLAN devices (module
    8021q; some hosts lack it): tried on a throw-away veth pair."""
    probe = 'aio-vlanprobe'
    subprocess.run(['ip', 'link', 'del', probe], capture_output=True)
    made = subprocess.run(['ip', 'link', 'add', probe, 'type', 'veth',
                           'peer', 'name', probe + 'p'],
                          capture_output=True).returncode == 0
    try:
        return made and subprocess.run(
            ['ip', 'link', 'add', 'link', probe, 'name', probe + '.2',
             'type', 'vlan', 'id', '2'], capture_output=True).returncode == 0
    finally:
        if made:
            subprocess.run(['ip', 'link', 'del', probe], capture_output=True)


def configure():
    conf.write_ini(CONF, {
        'DEFAULT': {'log_file': process.log_path('neutron-app'),
                    'core_plugin': 'ml2', 'service_plugins': '',
                    'auth_strategy': 'keystone',
                    'transport_url': conf.rabbit_url(),
                    # port status changes (the macvtap agent reporting
                    # a guest's device up) become nova's
                    # network-vif-plugged events, sent in batches every
                    # send_events_interval seconds (default 2, min 1)
                    'notify_nova_on_port_status_changes': 'true',
                    'notify_nova_on_port_data_changes': 'true',
                    'send_events_interval': '1',
                    # neutron-rpc-server: one worker, which also takes the
                    # agent's state reports (no extra process for them)
                    'rpc_workers': '1', 'rpc_state_report_workers': '0',
                    'api_paste_config': PASTE,
                    'state_path': os.path.join(settings.DATA, 'neutron')},
        'database': {'connection': conf.mysql_url('neutron')},
        'keystone_authtoken': conf.authtoken('neutron'),
        # the events go to nova's API as the nova service user
        'nova': dict(conf.ks_auth('nova'), endpoint_type='public'),
        'oslo_concurrency': {'lock_path': settings.LOCKS},
        'agent': {'root_helper': ''},
    })
    project_type = 'vlan' if vlan_capable() else 'local'
    state.update(project_network_type=project_type)
    conf.write_ini(ML2_CONF, {
        # flat provider networks bound by the macvtap agent; project
        # networks are VLANs on the same physical network (the macvtap
        # of a port sits on clearphys0.<vlan>, which nova-compute makes)
        # where the kernel has 802.1Q, else "local" (such ports do not
        # bind: every server goes on the provider network)
        'ml2': {'type_drivers': 'flat,vlan,local',
                'tenant_network_types': project_type,
                'mechanism_drivers': 'macvtap', 'extension_drivers': ''},
        # any physical network name is accepted: one that no agent maps
        # makes a port binding fail (the integration tests provoke that)
        'ml2_type_flat': {'flat_networks': '*'},
        'ml2_type_vlan': {'network_vlan_ranges': '%s:%d:%d' % (
            hostnet.NET.physnet, VLAN_RANGE[0], VLAN_RANGE[1])},
    })
    write_agent_conf(AGENT_CONF, socket.gethostname(), hostnet.NET.device)
    conf.copy_from_venv('etc/neutron/api-paste.ini', DIR)


def write_agent_conf(path, host, device):
    """A macvtap agent's configuration: its host name and the interface
    of the physical network on that host."""
    # the agent runs as root, without sudo: privsep's helper is started
    # directly, for each of neutron's privsep contexts
    privsep = '%s --config-file %s --config-file %s' % (
        settings.venv_tool('privsep-helper'), CONF, path)
    agent_ini = {
        'DEFAULT': {'host': host},
        'agent': {'polling_interval': '1', 'report_interval': '10'},
        'macvtap': {'physical_interface_mappings':
                    '%s:%s' % (hostnet.NET.physnet, device)},
        # the only firewall driver the macvtap agent accepts: security
        # groups are not enforced with this backend
        'securitygroup': {'firewall_driver': 'noop'},
    }
    for section in ('privsep', 'privsep_link', 'privsep_namespace',
                    'privsep_conntrack', 'privsep_dhcp_release',
                    'privsep_ovs_vsctl'):
        agent_ini[section] = {'helper_command': privsep}
    conf.write_ini(path, agent_ini)


def init():
    infra.create_databases('neutron')
    if not state.done('neutron_db'):
        process.run([settings.venv_tool('neutron-db-manage')] + SERVER_ARGS +
                    ['upgrade', 'heads'], 'neutron')
        state.mark_done('neutron_db')


def start():
    global _agent_started
    process.uwsgi('neutron', PORT, 'neutron.wsgi.api:application',
                  {'OS_NEUTRON_CONFIG_DIR': DIR})
    process.start('neutron-rpc-server', [
        settings.venv_tool('neutron-rpc-server')] + SERVER_ARGS +
        ['--log-file', process.log_path('neutron-rpc-server')])
    started = datetime.datetime.now(datetime.timezone.utc).replace(
        tzinfo=None, microsecond=0)
    t0 = time.monotonic()
    if process.start('neutron-macvtap-agent', [
            settings.venv_tool('python'),
            os.path.join(settings.ROOT, 'tools', 'macvtap_agent.py'),
            '--config-file', CONF, '--config-file', AGENT_CONF,
            '--log-file', process.log_path('neutron-macvtap-agent')]):
        _agent_started = started, t0


def wait():
    process.wait_http('neutron', PORT)
    conn = cloud.connection()
    _warm_up(conn)
    _wait_macvtap_agent(conn)


def stop():
    process.stop_all(PROCESSES)


def _warm_up(conn):
    # A fresh neutron API process answered its first port listing with a
    # 500 until another query ran; make both workers see a few queries.
    def ok():
        for _ in range(4):
            list(conn.network.networks())
            list(conn.network.security_groups())
            list(conn.network.ports())
        return True
    process.wait_for(ok, 60, 'the Neutron API to answer',
                     process.log_path('neutron-app'), interval=1)


def wait_agent(conn, host, name, timeout=180):
    """The macvtap agent ``name`` of ``host`` is alive."""
    def alive():
        process.ensure_alive('neutron-rpc-server')
        process.ensure_alive(name)
        return any(a.is_alive for a in conn.network.agents(
            host=host, agent_type=MACVTAP_AGENT_TYPE))
    process.wait_for(alive, timeout, 'the macvtap agent of %s to be alive'
                     % host, process.log_path(name), interval=0.5)


def _wait_macvtap_agent(conn, timeout=180):
    """The macvtap agent of this host is alive (the process this run
    started, if it started one)."""
    host = socket.gethostname()

    def alive():
        process.ensure_alive('neutron-rpc-server')
        process.ensure_alive('neutron-macvtap-agent')
        for agent in conn.network.agents(host=host,
                                         agent_type=MACVTAP_AGENT_TYPE):
            if not agent.is_alive:
                continue
            if _agent_started is None:
                return True
            begun = datetime.datetime.fromisoformat(
                str(agent.started_at).replace('Z', '')[:19])
            if begun >= _agent_started[0]:
                return True
        return False
    process.wait_for(alive, timeout, 'the macvtap agent of %s to be alive'
                     % host, process.log_path('neutron-macvtap-agent'),
                     interval=0.5)
    if _agent_started is not None:
        process.say('macvtap agent alive %.1fs after its start'
                    % (time.monotonic() - _agent_started[1]))
