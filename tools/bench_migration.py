"""Live migration benchmark: an idle and a busy Clear Container moved back
and forth between the all-in-one's two compute hosts through Nova
(``tools/allinone start --computes 2``).

For each workload a busybox container (clear.tiny: 1 vCPU, 128 MiB) boots
on host 1 on ``clear-net``; it is then live-migrated to host 2 and back
``--iterations`` times (openstacksdk's ``live_migrate_server``, the
request Nova's API gets from ``openstack server migrate
--live-migration``).  Per migration:

``nova_s``      the request to the server ACTIVE on the destination, no
                task (Nova's checks, scheduling, port bindings,
                pre_live_migration, the migration, post-migration)
``driver_s``    the driver's ``live_migration`` call at the source (its
                log line "Live migration to ... done in"): libvirt's job
                plus the source QEMU's exit
``libvirt_ms``  libvirt's own ``time_elapsed`` of the completed job
``downtime_ms`` libvirt's ``downtime`` of it: the guest stopped between
                the last memory pass and the start at the destination
``memory_mib``  memory sent, ``iterations`` its passes; ``disk_mib``
                libvirt's ``disk_processed`` (0 here: the NBD mirror of
                the writable disk is not counted in it)

The last four come from the destination's completed job statistics, which
the driver logs in ``post_live_migration_at_destination`` ("Live
migration completed: ..."); libvirt on the destination is read when the
line is missing.  Workloads:

idle   ``sleep``: nothing dirties memory
busy   16 MiB of random data in a tmpfs, copied over a second 16 MiB file
       in a loop (``dd conv=notrunc``): 16 MiB of memory dirtied per pass
       with data QEMU cannot send as zero pages

A migration not done after ``--force-after`` seconds is forced
(``force-complete``: the guest is paused until it finishes) and marked
``forced``.  JSON and PNG into ``--out``; nothing is asserted.

    tools/bench-migration [--iterations 3] [--workloads idle,busy]
"""

import argparse
import json
import os
import re
import sys
import time

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)
from bench_stats import summary  # noqa: E402

import libvirt  # noqa: E402

from nova_clear.deploy import aio  # noqa: E402
from nova_clear import samples  # noqa: E402

libvirt.registerErrorHandler(lambda ctx, err: None, None)

WORKLOADS = {
    'idle': ('echo workload-ready idle; exec sleep 100000',
             'workload-ready'),
    'busy': (
        'mkdir -p /mnt/t; if mount -t tmpfs -o size=40m tmpfs /mnt/t; then'
        ' where=tmpfs; else where=disk; fi;'
        ' dd if=/dev/urandom of=/mnt/t/src bs=1M count=16 2>/dev/null;'
        ' cp /mnt/t/src /mnt/t/dst;'
        ' (i=0; while :; do'
        ' dd if=/mnt/t/src of=/mnt/t/dst bs=1M conv=notrunc 2>/dev/null;'
        ' i=$((i+1)); [ $((i % 20)) = 0 ] && echo "pass $i"; done) &'
        ' echo "workload-ready busy $where $(busybox wc -c < /mnt/t/src)";'
        ' exec sleep 100000',
        'workload-ready'),
}
COMPLETED = re.compile(
    r'Live migration completed: (\S+) ms \(libvirt\), downtime (\S+) ms, '
    r'memory ([\d.]+) MiB sent in (\S+) iterations, disks ([\d.]+) MiB')
DRIVER_CALL = re.compile(r'Live migration to \S+ .* done in ([\d.]+)s')
TIMEOUT = 300


def num(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


class Bench:

    def __init__(self, args):
        self.args = args
        self.state = aio.state()
        if int(self.state.get('computes') or 1) < 2:
            raise SystemExit('the all-in-one runs one compute host: '
                             'tools/allinone start --computes 2')
        self.conn = aio.connection()
        self.host1, self.host2 = self.state['hosts'][:2]
        self.logs = {self.host1: os.path.join(self.state['logs'],
                                              'nova-compute.log'),
                     self.host2: os.path.join(self.state['logs'],
                                              'nova-compute-2.log')}
        self.uris = {self.host1: 'qemu:///system',
                     self.host2: self.state['host2']['libvirt_uri']}
        self.cleanups = []

    def close(self):
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - clean up the rest
                print('  cleanup failed: %s' % e)

    # -- servers ------------------------------------------------------------
    def boot(self, name, cmd, ready):
        image = self.conn.image.create_image(
            name='bench-lm-%s' % name,
            filename=samples.container_image('docker'), disk_format='raw',
            container_format='docker', wait=True, validate_checksum=False,
            clear_cmd=json.dumps([cmd]), clear_user='root')
        self.cleanups.append(lambda: self.conn.image.delete_image(
            image, ignore_missing=True))
        flavor = self.conn.compute.find_flavor(self.args.flavor,
                                               ignore_missing=False)
        server = self.conn.compute.create_server(
            name='bench-lm-%s' % name, image_id=image.id,
            flavor_id=flavor.id,
            networks=[{'uuid': self.state['network']['network_id']}],
            availability_zone='nova:%s' % self.host1)
        self.cleanups.append(lambda: self.delete(server.id))
        server = self.conn.compute.wait_for_server(server, wait=TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while True:
            out = self.console(server)
            if ready in out:
                return server, out[out.index(ready):].splitlines()[0]
            if time.monotonic() > deadline:
                raise RuntimeError('%s: no %r in its console:\n%s' % (
                    server.name, ready, out[-2000:]))
            time.sleep(1)

    def console(self, server):
        return self.conn.compute.get_server_console_output(
            server).get('output') or ''

    def delete(self, server_id):
        self.conn.compute.delete_server(server_id, ignore_missing=True)
        try:
            self.conn.compute.wait_for_delete(
                self.conn.compute.get_server(server_id), wait=TIMEOUT)
        except Exception:  # noqa: BLE001 - gone already
            pass

    # -- one migration ------------------------------------------------------
    def log_size(self, host):
        try:
            return os.path.getsize(self.logs[host])
        except OSError:
            return 0

    def log_since(self, host, offset, server_id):
        try:
            with open(self.logs[host], 'rb') as f:
                f.seek(offset)
                text = f.read().decode('utf-8', 'replace')
        except OSError:
            return ''
        return '\n'.join(line for line in text.splitlines()
                         if server_id in line)

    def libvirt_completed(self, host, server_id):
        conn = libvirt.open(self.uris[host])
        try:
            dom = conn.lookupByUUIDString(server_id)
            return dom.jobStats(
                libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED | getattr(
                    libvirt, 'VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED', 2))
        except libvirt.libvirtError:
            return {}
        finally:
            conn.close()

    def migrate(self, server, src, dst):
        offsets = {h: self.log_size(h) for h in (src, dst)}
        forced = False
        t0 = time.monotonic()
        self.conn.compute.live_migrate_server(server, host=dst,
                                              block_migration='auto')
        deadline = t0 + TIMEOUT
        while True:
            server = self.conn.compute.get_server(server.id)
            if server.status == 'ACTIVE' and not server.task_state and \
                    server.compute_host == dst:
                break
            if server.status == 'ERROR' or time.monotonic() > deadline:
                raise RuntimeError('%s: %s/%s on %s after %.0fs (%s)' % (
                    server.name, server.status, server.task_state,
                    server.compute_host, time.monotonic() - t0,
                    server.fault))
            if server.compute_host == src and server.status == 'ACTIVE' \
                    and not server.task_state and \
                    time.monotonic() - t0 > 10:
                raise RuntimeError('%s stayed on %s: the migration failed '
                                   '(see its instance actions)' % (
                                       server.name, src))
            if not forced and time.monotonic() - t0 > self.args.force_after:
                forced = self.force_complete(server)
            time.sleep(0.2)
        nova_s = time.monotonic() - t0
        result = {'direction': '%s -> %s' % (
            'host 1' if src == self.host1 else 'host 2',
            'host 2' if dst == self.host2 else 'host 1'),
            'nova_s': round(nova_s, 3), 'forced': forced}
        # the log lines may come a moment after the API shows ACTIVE
        deadline = time.monotonic() + 20
        while True:
            src_log = self.log_since(src, offsets[src], server.id)
            dst_log = self.log_since(dst, offsets[dst], server.id)
            call = DRIVER_CALL.search(src_log)
            done = COMPLETED.search(dst_log)
            if (call and done) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        result['driver_s'] = num(call.group(1)) if call else None
        if done:
            result.update(
                libvirt_ms=num(done.group(1)), downtime_ms=num(done.group(2)),
                memory_mib=num(done.group(3)), iterations=num(done.group(4)),
                disk_mib=num(done.group(5)), source='driver log')
        else:
            stats = self.libvirt_completed(dst, server.id)
            mib = 1024.0 * 1024
            result.update(
                libvirt_ms=stats.get('time_elapsed'),
                downtime_ms=stats.get('downtime'),
                memory_mib=round(stats['memory_processed'] / mib, 1)
                if 'memory_processed' in stats else None,
                iterations=stats.get('memory_iteration'),
                disk_mib=round(stats['disk_processed'] / mib, 1)
                if 'disk_processed' in stats else None,
                source='libvirt at the destination' if stats else 'none')
        return server, result

    def force_complete(self, server):
        running = [m for m in self.conn.compute.server_migrations(server)
                   if m.status == 'running']
        if not running:
            return False
        print('  not done after %ds: force-complete' % self.args.force_after)
        self.conn.compute.force_complete_server_migration(running[0], server)
        return True


def plot(result, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    workloads = list(result['summary'])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5),
                                   gridspec_kw={'width_ratios': [3, 2]})
    series = [('nova_s', 'through Nova (to ACTIVE)', 1, '#4477aa'),
              ('driver_s', "driver's live_migration call", 1, '#88ccee'),
              ('libvirt_ms', "libvirt's job", 1000.0, '#44aa99')]
    width = 0.8 / len(series)
    for i, (key, label, scale, color) in enumerate(series):
        meds, errs = [], [[], []]
        for w in workloads:
            s = result['summary'][w].get(key)
            med = s['median'] / scale if s else 0
            meds.append(med)
            errs[0].append(med - s['min'] / scale if s else 0)
            errs[1].append(s['max'] / scale - med if s else 0)
        xs = [x + (i - 1) * width for x in range(len(workloads))]
        ax1.bar(xs, meds, width, yerr=errs, capsize=4, label=label,
                color=color)
    ax1.set_xticks(range(len(workloads)))
    ax1.set_xticklabels(workloads)
    ax1.set_ylabel('seconds (median, min-max)')
    ax1.set_title('Live migration time, %d per workload' % (
        2 * result['iterations']))
    ax1.legend(fontsize=8)
    meds, errs = [], [[], []]
    for w in workloads:
        s = result['summary'][w].get('downtime_ms')
        med = s['median'] if s else 0
        meds.append(med)
        errs[0].append(med - s['min'] if s else 0)
        errs[1].append(s['max'] - med if s else 0)
    ax2.bar(workloads, meds, yerr=errs, capsize=4, color='#cc6677')
    ax2.set_ylabel("libvirt's downtime (ms, median, min-max)")
    ax2.set_title('Downtime')
    fig.suptitle('%s, %s, TCG' % (result['flavor'], result['date']),
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


KEYS = ('nova_s', 'driver_s', 'libvirt_ms', 'downtime_ms', 'memory_mib',
        'iterations', 'disk_mib')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--iterations', type=int, default=3,
                        help='round trips (host 1 -> 2 -> 1) per workload')
    parser.add_argument('--workloads', default='idle,busy')
    parser.add_argument('--flavor', default='clear.tiny')
    parser.add_argument('--force-after', type=int, default=90,
                        help='seconds before force-complete')
    parser.add_argument('--out', default=os.path.join(
        os.path.dirname(TOOLS), 'bench-results'))
    args = parser.parse_args()
    reason = aio.not_up_reason()
    if reason:
        print(reason)
        return 2
    bench = Bench(args)
    runs = {}
    ready_lines = {}
    failures = 0
    try:
        for name in args.workloads.split(','):
            cmd, ready = WORKLOADS[name]
            print('%s: booting on %s' % (name, bench.host1))
            server, line = bench.boot(name, cmd, ready)
            ready_lines[name] = line
            print('  %s' % line)
            time.sleep(3)
            runs[name] = []
            for it in range(args.iterations):
                for src, dst in ((bench.host1, bench.host2),
                                 (bench.host2, bench.host1)):
                    try:
                        server, r = bench.migrate(server, src, dst)
                    except Exception as e:  # noqa: BLE001 - measured
                        print('  %d %s -> %s FAILED: %s' % (
                            it + 1, src, dst, e))
                        failures += 1
                        runs[name].append(None)
                        break
                    r['iteration'] = it + 1
                    runs[name].append(r)
                    print('  %d %s: Nova %.2fs, driver %ss, libvirt %s ms, '
                          'downtime %s ms, %s MiB in %s passes%s' % (
                              it + 1, r['direction'], r['nova_s'],
                              r['driver_s'], r['libvirt_ms'],
                              r['downtime_ms'], r['memory_mib'],
                              r['iterations'],
                              ' (forced)' if r['forced'] else ''))
                    time.sleep(2)
                else:
                    continue
                break
    finally:
        bench.close()
    result = {
        'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
        'flavor': args.flavor, 'iterations': args.iterations,
        'hosts': [bench.host1, bench.host2],
        'workloads': {n: WORKLOADS[n][0] for n in runs},
        'ready_lines': ready_lines, 'runs': runs,
        'summary': {n: {k: summary([r and r.get(k) for r in rs])
                        for k in KEYS} for n, rs in runs.items()},
        'by_direction': {n: {d: {k: summary([r.get(k) for r in rs
                                             if r and r['direction'] == d])
                                 for k in ('nova_s', 'downtime_ms')}
                             for d in ('host 1 -> host 2',
                                       'host 2 -> host 1')}
                         for n, rs in runs.items()},
        'forced': sum(1 for rs in runs.values() for r in rs
                      if r and r['forced']),
        'failures': failures,
    }
    os.makedirs(args.out, exist_ok=True)
    jpath = os.path.join(args.out, 'migration-bench.json')
    ppath = os.path.join(args.out, 'migration-bench.png')
    with open(jpath, 'w') as f:
        json.dump(result, f, indent=2)
    if any(runs.values()):
        plot(result, ppath)
    print('\n%-6s %-12s %8s %8s %8s %3s' % (
        '', '', 'median', 'min', 'max', 'n'))
    for n, s in result['summary'].items():
        for k in KEYS:
            v = s[k]
            if v:
                print('%-6s %-12s %8.2f %8.2f %8.2f %3d' % (
                    n, k, v['median'], v['min'], v['max'], v['n']))
    print('forced: %d, failures: %d' % (result['forced'], failures))
    print('wrote %s and %s' % (jpath, ppath))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
