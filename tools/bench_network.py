"""Network benchmark against the all-in-one: servers with a port on the
provider network vs servers without one, interleaved in one run.

For each boot, timed at the API from ``POST /servers``: ACTIVE (for a port
this includes waiting for Neutron's ``network-vif-plugged``), the workload
line in the console, and - with a port - the first ping answered from the
provider namespace; then the delete, after which no macvtap device of the
port may remain.  Writes ``network-bench.json`` and ``network-bench.png``.

    tools/bench-network [--iterations 5] [--out bench-results]
"""

import argparse
import json
import os
import subprocess
import sys
import time

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(TOOLS))
sys.path.insert(0, TOOLS)

from bench_stats import summary  # noqa: E402
from nova_clear.deploy import aio  # noqa: E402

LINE = 'disk-init: up on'
HDR = {'OpenStack-API-Version': 'compute 2.90'}


def macvtap_macs():
    out = subprocess.run(['ip', '-j', 'link', 'show', 'type', 'macvtap'],
                         capture_output=True, text=True, check=True).stdout
    return {link.get('address') for link in json.loads(out or '[]')}


def ping(netns, address, deadline):
    while time.monotonic() < deadline:
        proc = subprocess.run(['ip', 'netns', 'exec', netns, 'busybox',
                               'ping', '-c', '1', '-W', '1', address],
                              capture_output=True)
        if proc.returncode == 0:
            return True
        time.sleep(0.05)
    return False


def boot(conn, state, name, network_id, timeout=300):
    flavor = conn.compute.find_flavor('clear.tiny', ignore_missing=False)
    body = {'server': {'name': name, 'imageRef': state['images'][
        'clear-busybox'], 'flavorRef': flavor.id,
        'networks': [{'uuid': network_id}] if network_id else 'none'}}
    r = {'network': bool(network_id)}
    t0 = time.monotonic()
    deadline = t0 + timeout
    resp = conn.compute.post('/servers', json=body, headers=HDR)
    sid = resp.json()['server']['id']
    r['id'] = sid
    try:
        while True:
            s = conn.compute.get('/servers/%s' % sid,
                                 headers=HDR).json()['server']
            if s['status'] == 'ACTIVE':
                r['active'] = time.monotonic() - t0
                break
            if s['status'] == 'ERROR' or time.monotonic() > deadline:
                raise RuntimeError('%s: %s %s' % (name, s['status'],
                                                  s.get('fault')))
            time.sleep(0.05)
        while LINE not in (conn.compute.post(
                '/servers/%s/action' % sid, headers=HDR,
                json={'os-getConsoleOutput': {}}).json().get('output')
                or ''):
            if time.monotonic() > deadline:
                raise RuntimeError('%s: no workload line' % name)
            time.sleep(0.1)
        r['line'] = time.monotonic() - t0
        macs = set()
        if network_id:
            addrs = s['addresses'][state['network']['network']]
            address = [a['addr'] for a in addrs if a['version'] == 4][0]
            macs = {a['OS-EXT-IPS-MAC:mac_addr'] for a in addrs}
            if not ping(state['network']['netns'], address, deadline):
                raise RuntimeError('%s: %s never answered' % (name, address))
            r['ping'] = time.monotonic() - t0
    finally:
        t1 = time.monotonic()
        server = conn.compute.get_server(sid)
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, interval=0.1)
        r['delete'] = time.monotonic() - t1
    r['macvtaps_left'] = len(macs & macvtap_macs())
    return r


def plot(result, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    metrics = ('active', 'line', 'ping', 'delete')
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.38
    for k, (mode, color) in enumerate((('port', '#4477aa'),
                                       ('nic_none', '#cc6677'))):
        xs, meds, lo, hi = [], [], [], []
        for i, m in enumerate(metrics):
            s = result[mode].get(m)
            if not s:
                continue
            xs.append(i + (k - 0.5) * width)
            meds.append(s['median'])
            lo.append(s['median'] - s['min'])
            hi.append(s['max'] - s['median'])
        ax.bar(xs, meds, width, yerr=[lo, hi], capsize=4, color=color,
               label='with a port on %s' % result['network']
               if mode == 'port' else '--nic none')
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels(['POST -> ACTIVE', 'POST -> workload line',
                        'POST -> answers ping', 'delete -> gone'])
    ax.set_ylabel('seconds (median, min-max)')
    ax.set_title('All-in-one, %d boots each, interleaved; ACTIVE ratio %.2f'
                 % (result['iterations'], result['ratios']['active']))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--iterations', type=int, default=5)
    parser.add_argument('--out', default=os.path.join(
        os.path.dirname(TOOLS), 'bench-results'))
    args = parser.parse_args()
    reason = aio.not_up_reason()
    if reason:
        sys.exit(reason)
    state = aio.state()
    conn = aio.connection()
    network_id = state['network']['network_id']
    runs = []
    for i in range(args.iterations):
        for net in (network_id, None):
            name = 'bench-net-%d-%s' % (i, 'port' if net else 'none')
            r = boot(conn, state, name, net)
            print('%-20s ACTIVE %.2fs  line %.2fs  ping %s  delete %.2fs'
                  % (name, r['active'], r['line'],
                     '%.2fs' % r['ping'] if 'ping' in r else '-',
                     r['delete']), flush=True)
            runs.append(r)
    result = {'iterations': args.iterations,
              'network': state['network']['network'],
              'backend': 'ML2 macvtap + neutron-macvtap-agent',
              'runs': runs}
    for mode, flag in (('port', True), ('nic_none', False)):
        sel = [r for r in runs if r['network'] == flag]
        result[mode] = {m: summary([r.get(m) for r in sel])
                        for m in ('active', 'line', 'ping', 'delete')}
    result['ratios'] = {
        m: round(result['port'][m]['median'] /
                 result['nic_none'][m]['median'], 3)
        for m in ('active', 'line', 'delete')}
    result['macvtaps_left'] = sum(r['macvtaps_left'] for r in runs)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'network-bench.json'), 'w') as f:
        json.dump(result, f, indent=2)
    plot(result, os.path.join(args.out, 'network-bench.png'))
    print(json.dumps({k: result[k] for k in ('port', 'nic_none', 'ratios',
                                             'macvtaps_left')}, indent=1))


if __name__ == '__main__':
    main()
