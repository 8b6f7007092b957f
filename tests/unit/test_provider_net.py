"""nova_clear.deploy.provider_net: the plan, the commands and the checks,
without root (``ip`` is faked)."""

import io
import json
from unittest import mock

import fixtures
import testtools

from nova_clear.deploy import provider_net as pn


def host(p, device=True, kind='veth', up=True, v4=True, v6=True,
         peer=True, linked=True, peer_up=True, lo_up=True, netns=True):
    """``ip -j`` entries of a host, made as ensure() makes them unless
    told otherwise: (netns_exists, device, peer, lo)."""
    dev = {'ifname': p.device, 'ifindex': 7, 'link_index': 2,
           'flags': ['BROADCAST', 'UP'] if up else ['BROADCAST'],
           'linkinfo': {'info_kind': kind}, 'addr_info': []}
    if not v4:
        dev['addr_info'].append({'family': 'inet', 'local': '10.0.0.9',
                                 'prefixlen': 24})
    addrs = []
    if v4:
        addrs.append({'family': 'inet', 'local': p.gateway,
                      'prefixlen': p.prefixlen})
    if v6 and p.cidr6:
        addrs.append({'family': 'inet6', 'local': p.gateway6,
                      'prefixlen': p.prefixlen6})
    peer_entry = {'ifname': p.peer, 'ifindex': 2,
                  'link_index': 7 if linked else 9,
                  'flags': ['UP'] if peer_up else [],
                  'linkinfo': {'info_kind': 'veth'}, 'addr_info': addrs}
    lo = {'ifname': 'lo', 'flags': ['LOOPBACK', 'UP'] if lo_up else []}
    return (netns, dev if device else None, peer_entry if peer else None,
            lo)


class FakeHost:
    """``ip``, answering from what the commands run so far made."""

    def __init__(self, p, state=None):
        self.p = p
        self.state = state      # the host() tuple, or None: nothing there
        self.cmds = []
        self.links = []

    def run(self, cmd):
        self.cmds.append(cmd)
        if cmd[-1] == 'up' and cmd[-2] == self.p.peer:
            self.state = host(self.p, v6=False)
        if cmd[1:3] == ['netns', 'del']:
            self.state = None

    def ip_json(self, *args, ns=None):
        netns, dev, peer, lo = self.state or (False, None, None, None)
        if args[0] == '-d' and args[1] == 'link':
            return self.links
        if ns:
            if not netns:
                return []
            entry = peer if self.p.peer in args else lo
        else:
            entry = dev
        return [entry] if entry else []

    def netns_exists(self, p):
        return bool(self.state and self.state[0])

    def patch(self, test):
        test.useFixture(fixtures.MockPatchObject(pn, '_ip_json',
                                                 self.ip_json))
        test.useFixture(fixtures.MockPatchObject(pn, '_netns_exists',
                                                 self.netns_exists))


class TestPlan(testtools.TestCase):

    def test_defaults_are_the_all_in_ones(self):
        p = pn.plan()
        self.assertEqual(
            {'physnet': 'clearnet', 'physical_interface': 'clearphys0',
             'peer_interface': 'clearpeer0', 'netns': 'nova-clear-provider',
             'network': 'clear-net', 'subnet': 'clear-subnet',
             'cidr': '10.77.0.0/24', 'gateway': '10.77.0.1',
             'allocation_pool': ['10.77.0.10', '10.77.0.250'],
             'subnet6': 'clear-subnet6', 'cidr6': 'fd00:77::/64',
             'gateway6': 'fd00:77::1', 'host_interface': 'clearhost0',
             'host_address': '10.77.0.2'}, p.as_dict())
        self.assertEqual('clearphys0 (clearnet) <-> clearpeer0 in netns '
                         'nova-clear-provider, 10.77.0.1', p.describe())

    def test_names_and_networks_of_a_test(self):
        p = pn.plan(device='ncp01234567', peer='ncq01234567',
                    netns='nova-clear-ft-01234567', cidr='10.79.0.0/24',
                    cidr6='fd00:79::/64')
        self.assertEqual(('10.79.0.1', 'fd00:79::1'), (p.gateway, p.gateway6))
        self.assertEqual('10.79.0.11', p.address(11))
        self.assertEqual('fd00:79::29', p.address6(41))
        self.assertEqual((24, 64), (p.prefixlen, p.prefixlen6))

    def test_ipv4_only_and_given_gateways(self):
        p = pn.plan(cidr='10.9.8.0/25', gateway='10.9.8.126', cidr6=None)
        self.assertEqual(('10.9.8.126', None, None),
                         (p.gateway, p.cidr6, p.gateway6))
        self.assertEqual(('10.9.8.10', '10.9.8.122'), p.pool)
        self.assertEqual([], pn.gateway6_commands(p))
        p = pn.plan(gateway6='fd00:77::fe')
        self.assertEqual('fd00:77::fe', p.gateway6)

    def test_refused(self):
        for kw in [dict(device='x' * 16), dict(peer='a/b'),
                   dict(netns='a b'), dict(device=''),
                   dict(peer=pn.DEVICE), dict(cidr='10.77.0.1/24'),
                   dict(cidr='fd00::/64'), dict(cidr6='10.0.0.0/24'),
                   dict(cidr='10.0.0.0/29'), dict(gateway='10.78.0.1'),
                   dict(gateway='10.77.0.0'), dict(gateway='10.77.0.255'),
                   dict(gateway='10.77.0.20'), dict(gateway='nope'),
                   dict(gateway6='fd00:78::1')]:
            self.assertRaises(pn.ProviderNetError, pn.plan, **kw)


class TestCommands(testtools.TestCase):

    def test_up_is_the_all_in_ones(self):
        p = pn.plan()
        self.assertEqual([
            'ip netns add nova-clear-provider',
            'ip link add clearphys0 type veth peer name clearpeer0 netns '
            'nova-clear-provider',
            'ip link set dev clearphys0 addrgenmode none',
            'ip link set dev clearphys0 up',
            'ip -n nova-clear-provider link set dev lo up',
            'ip -n nova-clear-provider addr add 10.77.0.1/24 dev clearpeer0',
            'ip -n nova-clear-provider link set dev clearpeer0 up',
            'ip -n nova-clear-provider addr replace fd00:77::1/64 dev '
            'clearpeer0 nodad',
        ], [' '.join(c) for c in pn.up_commands(p) +
            pn.gateway6_commands(p)])

    def test_down(self):
        p = pn.plan()
        self.assertEqual([['ip', 'link', 'del', 'dev', 'clearphys0'],
                          ['ip', 'netns', 'del', 'nova-clear-provider']],
                         pn.down_commands(p, True, True))
        self.assertEqual([['ip', 'netns', 'del', 'nova-clear-provider']],
                         pn.down_commands(p, False, True))
        self.assertEqual([], pn.down_commands(p, False, False))


class TestProblem(testtools.TestCase):

    def test_as_made(self):
        p = pn.plan()
        self.assertIsNone(pn.problem_of(p, *host(p)))
        p4 = pn.plan(cidr6=None)
        self.assertIsNone(pn.problem_of(p4, *host(p4, v6=False)))

    def test_each_difference(self):
        p = pn.plan()
        for kw, why in [
                (dict(netns=False), 'no network namespace nova-clear-'
                                    'provider'),
                (dict(device=False), 'no clearphys0'),
                (dict(kind='dummy'), 'clearphys0 is not a veth'),
                (dict(up=False), 'clearphys0 is down'),
                (dict(v4=False), 'clearphys0 has an IPv4 address'),
                (dict(peer=False), 'no clearpeer0 in nova-clear-provider'),
                (dict(linked=False), 'clearpeer0 is not the peer of '
                                     'clearphys0'),
                (dict(peer_up=False), 'clearpeer0 is down'),
                (dict(v6=False), 'clearpeer0 has not fd00:77::1/64'),
                (dict(lo_up=False), 'lo is down in nova-clear-provider')]:
            self.assertEqual(why, pn.problem_of(p, *host(p, **kw)), kw)

    def test_ipv6_left_to_ensure(self):
        p = pn.plan()
        self.assertIsNone(pn.problem_of(p, *host(p, v6=False),
                                        with_ipv6=False))

    def test_users(self):
        p = pn.plan()
        links = [{'ifname': 'macvtap0', 'link': 'clearphys0',
                  'linkinfo': {'info_kind': 'macvtap'}},
                 {'ifname': 'mv1', 'link': 'clearphys0',
                  'linkinfo': {'info_kind': 'macvlan'}},
                 {'ifname': 'vlan5', 'link': 'clearphys0',
                  'linkinfo': {'info_kind': 'vlan'}},
                 {'ifname': 'macvtap9', 'link': 'eth0',
                  'linkinfo': {'info_kind': 'macvtap'}},
                 {'ifname': 'clearhost0', 'link': 'clearphys0',
                  'linkinfo': {'info_kind': 'macvlan'}},
                 {'ifname': 'clearphys0'}]
        # the host's own macvlan is no guest
        self.assertEqual(['macvtap0', 'mv1'], pn.users_of(p, links))


def host_access(p, kind='macvlan', mode='bridge', link_index=7, up=True,
                address=None):
    """``ip -j -d addr show`` of the host's macvlan, as
    host_access_commands makes it unless told otherwise."""
    return {'ifname': p.host_device, 'ifindex': 11, 'link_index': link_index,
            'flags': ['BROADCAST', 'UP'] if up else ['BROADCAST'],
            'linkinfo': {'info_kind': kind, 'info_data': {'mode': mode}},
            'addr_info': [{'family': 'inet',
                           'local': address or p.host_address,
                           'prefixlen': p.prefixlen}]}


class TestHostAccess(testtools.TestCase):

    def test_address_below_the_pool(self):
        p = pn.plan()
        self.assertEqual(('clearhost0', '10.77.0.2'),
                         (p.host_device, p.host_address))
        self.assertEqual('10.77.0.2', p.as_dict()['host_address'])
        # a gateway on the host's address is refused
        self.assertRaises(pn.ProviderNetError, pn.plan, gateway='10.77.0.2')
        self.assertRaises(pn.ProviderNetError, pn.plan,
                          host_device='a-much-too-long-name')

    def test_commands(self):
        p = pn.plan()
        self.assertEqual(
            [['ip', 'link', 'add', 'clearhost0', 'link', 'clearphys0',
              'type', 'macvlan', 'mode', 'bridge'],
             ['ip', 'addr', 'add', '10.77.0.2/24', 'dev', 'clearhost0'],
             ['ip', 'link', 'set', 'dev', 'clearhost0', 'up']],
            pn.host_access_commands(p))

    def test_problem(self):
        p = pn.plan()
        dev = host(p)[1]
        self.assertIsNone(pn.host_access_problem_of(p, dev, host_access(p)))
        for entry, why in (
                (None, 'no clearhost0'),
                (host_access(p, kind='macvtap'), 'not a macvlan'),
                (host_access(p, mode='private'), 'not a macvlan'),
                (host_access(p, link_index=3), 'not on clearphys0'),
                (host_access(p, up=False), 'is down'),
                (host_access(p, address='10.77.0.9'), 'has not 10.77.0.2')):
            self.assertIn(why, pn.host_access_problem_of(p, dev, entry))

    def _ensure(self, existing):
        p = pn.plan()
        dev = host(p)[1]
        ran = []

        def ip_json(*args, ns=None):
            if args[-1] == p.host_device:
                return [existing] if existing else []
            return [dev]
        self.useFixture(fixtures.MockPatchObject(pn, '_ip_json', ip_json))
        return p, pn.ensure_host_access(p, runner=ran.append), ran

    def test_ensure_reuses(self):
        p, made, ran = self._ensure(host_access(pn.plan()))
        self.assertEqual((False, []), (made, ran))

    def test_ensure_makes(self):
        p, made, ran = self._ensure(None)
        self.assertEqual((True, pn.host_access_commands(p)), (made, ran))

    def test_ensure_remakes(self):
        p, made, ran = self._ensure(host_access(pn.plan(), up=False))
        self.assertEqual(
            (True, [['ip', 'link', 'del', 'dev', 'clearhost0']] +
             pn.host_access_commands(p)), (made, ran))


class TestEnsureRemove(testtools.TestCase):

    def test_made_from_nothing(self):
        p = pn.plan()
        fake = FakeHost(p)
        fake.patch(self)
        said = []
        self.assertTrue(pn.ensure(p, runner=fake.run, say=said.append))
        self.assertEqual(pn.up_commands(p) + pn.gateway6_commands(p),
                         fake.cmds)
        self.assertEqual([], said)

    def test_reused(self):
        p = pn.plan()
        fake = FakeHost(p, host(p, v6=False))
        fake.patch(self)
        self.assertFalse(pn.ensure(p, runner=fake.run))
        # only the IPv6 gateway, in place
        self.assertEqual(pn.gateway6_commands(p), fake.cmds)

    def test_wrong_shape_made_again(self):
        p = pn.plan()
        fake = FakeHost(p, host(p, peer_up=False))
        fake.patch(self)
        said = []
        self.assertTrue(pn.ensure(p, runner=fake.run, say=said.append))
        self.assertEqual(pn.down_commands(p, True, True) +
                         pn.up_commands(p) + pn.gateway6_commands(p),
                         fake.cmds)
        self.assertEqual(['provider network on the host: clearpeer0 is '
                          'down; making it again'], said)

    def test_still_wrong_after_making_it(self):
        p = pn.plan()
        fake = FakeHost(p)
        fake.patch(self)
        err = self.assertRaises(pn.ProviderNetError, pn.ensure, p,
                                runner=fake.cmds.append)
        self.assertIn('no network namespace', str(err))

    def test_remove(self):
        p = pn.plan()
        fake = FakeHost(p, host(p))
        fake.patch(self)
        self.assertTrue(pn.remove(p, runner=fake.run))
        self.assertEqual(pn.down_commands(p, True, True), fake.cmds)
        fake.cmds = []
        self.assertTrue(pn.remove(p, runner=fake.run))
        self.assertEqual([], fake.cmds)

    def test_remove_leaves_it_to_guests(self):
        p = pn.plan()
        fake = FakeHost(p, host(p))
        fake.links = [{'ifname': 'macvtap3', 'link': p.device,
                       'linkinfo': {'info_kind': 'macvtap'}}]
        fake.patch(self)
        said = []
        self.assertFalse(pn.remove(p, runner=fake.run, say=said.append))
        self.assertEqual([], fake.cmds)
        self.assertEqual(['leaving clearphys0 and nova-clear-provider: '
                          'guests still use it (macvtap3)'], said)
        self.assertTrue(pn.remove(p, force=True, runner=fake.run))
        self.assertEqual(pn.down_commands(p, True, True), fake.cmds)

    def test_runner_failure(self):
        fake = mock.Mock(returncode=2, stderr='RTNETLINK answers: nope\n')
        with mock.patch.object(pn.subprocess, 'run', return_value=fake):
            err = self.assertRaises(pn.ProviderNetError, pn._run,
                                    ['ip', 'netns', 'add', 'x'])
        self.assertEqual('ip netns add x exited 2: RTNETLINK answers: nope',
                         str(err))


class TestMain(testtools.TestCase):

    def main(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with mock.patch('sys.stdout', out), mock.patch('sys.stderr', err):
            rc = pn.main(list(argv))
        return rc, out.getvalue(), err.getvalue()

    def test_show_plan_only(self):
        rc, out, _ = self.main('show', '--plan-only', '--netns', 'x',
                               '--no-ipv6')
        self.assertEqual(0, rc)
        shown = json.loads(out)
        self.assertEqual(('x', None, 'clearphys0'),
                         (shown['netns'], shown['cidr6'],
                          shown['physical_interface']))
        self.assertNotIn('problem', shown)

    def test_show_problem(self):
        with mock.patch.object(pn, 'problem', return_value='no clearphys0'):
            rc, out, _ = self.main('show')
        self.assertEqual(1, rc)
        self.assertEqual('no clearphys0', json.loads(out)['problem'])

    def test_up_and_down(self):
        with mock.patch.object(pn, 'ensure', return_value=True) as ensure:
            rc, out, _ = self.main('up', '--device', 'eth9')
        self.assertEqual(0, rc)
        self.assertEqual(pn.plan(device='eth9'), ensure.call_args[0][0])
        self.assertEqual('made eth9 (clearnet) <-> clearpeer0 in netns '
                         'nova-clear-provider, 10.77.0.1\n', out)
        with mock.patch.object(pn, 'remove', return_value=False) as remove:
            rc, out, _ = self.main('down', '--force')
        self.assertEqual((0, ''), (rc, out))
        self.assertTrue(remove.call_args[1]['force'])

    def test_errors(self):
        rc, _, err = self.main('up', '--cidr', '10.77.0.1/24')
        self.assertEqual(1, rc)
        self.assertIn('nova-clear-provider-net: error: bad network', err)
        with mock.patch.object(pn, 'ensure',
                               side_effect=pn.ProviderNetError('boom')):
            rc, _, err = self.main('up')
        self.assertEqual((1, 'nova-clear-provider-net: error: boom\n'),
                         (rc, err))
