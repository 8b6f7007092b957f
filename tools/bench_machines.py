"""``tools/bench-boot --machines``: the microvm and q35 (PCI) variants of a
Clear Container side by side, kernel by kernel, in one run: boot time to
the agent's readiness line and QEMU's RSS/PSS once ready, ratios, JSON
and a PNG (doc/source/machine-variants.rst)."""

import json
import os
import time

import nova.conf

from bench_stats import qemu_mem as _qemu_mem
from bench_stats import summary

CONF = nova.conf.CONF


def machine_variants(bench, kernels, iterations, out, baseline=None):
    """microvm against q35, kernel by kernel, interleaved per iteration;
    with ``baseline`` (another assets directory, e.g. the kernel before a
    configuration change) its minimal kernel on microvm too, as
    'baseline'.  Writes machine-bench.json and .png into ``out``."""
    drivers = {k: bench.driver(k) for k in kernels}
    machines = {k: ('microvm', 'q35') for k in kernels}
    if baseline:
        drivers['baseline'] = bench.driver('minimal', baseline)
        machines['baseline'] = ('microvm',)
    boot, rss, pss = {}, {}, {}
    for it in range(iterations):
        print('iteration %d/%d' % (it + 1, iterations))
        for k, drv in drivers.items():
            for machine in machines[k]:
                CONF.set_override('machine_type', machine, group='clear')
                key = k if k == 'baseline' else '%s-%s' % (machine, k)
                t, inst = bench.spawn_until(
                    drv, bench.disk_image, 'nova-clear: ready {uuid}',
                    keep=True)
                boot.setdefault(key, []).append(t)
                time.sleep(1)
                rss.setdefault(key, []).append(_qemu_mem(inst.uuid, 'Rss'))
                pss.setdefault(key, []).append(_qemu_mem(inst.uuid, 'Pss'))
                drv.destroy(bench.ctx, inst, None)
                print('  %s %s s, RSS %.1f MiB' % (
                    key, 'FAIL' if t is None else '%.2f' % t, rss[key][-1]))
    CONF.clear_override('machine_type', group='clear')
    result = {
        'virt_type': 'qemu (TCG)', 'iterations': iterations,
        'pcie_ports': CONF['clear'].num_pcie_ports,
        'kernels': {k: '%s (%s)' % (d.assets.load().kernel_release,
                                    d.assets.path)
                    for k, d in drivers.items()},
        'boot': {k: summary(v) for k, v in boot.items()},
        'rss_mib': {k: summary(v) for k, v in rss.items()},
        'pss_mib': {k: summary(v) for k, v in pss.items()},
        'raw': {'boot': boot, 'rss_mib': rss, 'pss_mib': pss},
    }
    ratios = {}
    for k in kernels:
        a, b = result['boot'].get('microvm-' + k), result['boot'].get(
            'q35-' + k)
        if a and b:
            ratios['q35/microvm boot (%s)' % k] = round(
                b['median'] / a['median'], 2)
            ratios['q35-microvm boot s (%s)' % k] = round(
                b['median'] - a['median'], 2)
            ratios['q35-microvm RSS MiB (%s)' % k] = round(
                result['rss_mib']['q35-' + k]['median'] -
                result['rss_mib']['microvm-' + k]['median'], 1)
    if result['boot'].get('baseline') and result['boot'].get(
            'microvm-minimal'):
        ratios['microvm: minimal/baseline boot'] = round(
            result['boot']['microvm-minimal']['median'] /
            result['boot']['baseline']['median'], 2)
    result['ratios'] = ratios
    os.makedirs(out, exist_ok=True)
    jpath = os.path.join(out, 'machine-bench.json')
    with open(jpath, 'w') as f:
        json.dump(result, f, indent=2)
    plot_machines(result, os.path.join(out, 'machine-bench.png'))
    print('\n%-24s %8s %8s %8s %10s' % (
        'variant', 'median', 'min', 'max', 'RSS MiB'))
    for k, v in result['boot'].items():
        if v:
            print('%-24s %8.2f %8.2f %8.2f %10.1f' % (
                k, v['median'], v['min'], v['max'],
                result['rss_mib'][k]['median']))
    for k, v in ratios.items():
        print('%-34s %.2f' % (k, v))
    print('wrote %s' % jpath)
    return 1 if any(v.count(None) for v in boot.values()) else 0


def plot_machines(result, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = [k for k, v in result['boot'].items() if v]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    b = [result['boot'][k] for k in names]
    ax1.bar(names, [v['median'] for v in b],
            yerr=[[v['median'] - v['min'] for v in b],
                  [v['max'] - v['median'] for v in b]], capsize=4,
            color=['#4477aa' if n.startswith(('microvm', 'baseline'))
                   else '#cc6677'
                   for n in names])
    ax1.set_ylabel('seconds, spawn to readiness line (median, min-max)')
    ax1.set_title('Machine variants, %s, %d iteration(s)' % (
        result['virt_type'], result['iterations']))
    ax1.tick_params(axis='x', rotation=20)
    ax2.bar(names, [result['rss_mib'][k]['median'] for k in names],
            color='#999933')
    ax2.set_ylabel('QEMU RSS once ready (MiB, median)')
    ax2.tick_params(axis='x', rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
