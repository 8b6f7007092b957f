"""Boot benchmark: the driver against its floor and its alternative.

One run, same machine, scenarios interleaved per iteration:

floor-<kernel>      qemu-system-x86_64 started directly with the same
                    kernel, initramfs, command line and disk -> the agent's
                    readiness line
driver-<kernel>     ClearDriver.spawn() -> readiness line (real libvirt)
container-<kernel>  spawn of a container image -> its first output line
fullvm              what nova's libvirt driver boots: machine pc, SeaBIOS,
                    extlinux on the disk, the distribution kernel, USB
                    tablet, VNC, virtio video, balloon -> the same line

plus host memory (PSS of the QEMU processes) with 1 and N idle instances,
N concurrent spawns (time to all ready, failures), and whether KVM can be
measured here.  Results: JSON and a PNG; ratios printed.  Speed is never
asserted: this is a measurement, not a test.

``--machines`` measures the machine variants instead (nova_clear.domain_pci):

<machine>-<kernel>  ClearDriver.spawn() of the disk image on machine
                    microvm or q35 (+ qboot, virtio-pci, spare PCIe root
                    ports), same kernel, -> readiness line; then the QEMU
                    process's RSS and PSS once the guest is ready

    tools/bench-boot [--iterations 5] [--smoke]
    tools/bench-boot --machines [--iterations 3]
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)
from bench_stats import qemu_mem as _qemu_mem  # noqa: E402
from bench_stats import read as _read  # noqa: E402
from bench_stats import summary  # noqa: E402
import boot_demo  # noqa: E402

import libvirt  # noqa: E402
import nova.conf  # noqa: E402
from nova import context as nova_context  # noqa: E402

from nova_clear.buildtools import debian  # noqa: E402
from nova_clear.deploy import localboot  # noqa: E402
from nova_clear import domain  # noqa: E402
from nova_clear.guest import assets as guest_assets  # noqa: E402
from nova_clear.guest import build  # noqa: E402
from nova_clear import samples  # noqa: E402

CONF = nova.conf.CONF
MiB = 1024 * 1024
FULLVM_MODULES = build.WANTED_MODULES   # virtio_pci among them


class Bench:

    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix='nova-clear-bench-',
                                     dir='/var/tmp')
        os.chmod(self.work, 0o755)
        self.ctx = nova_context.RequestContext('bench', 'bench',
                                               is_admin=True)
        self.glance = localboot.LocalGlance()
        self.undo_glance = self.glance.install()
        self.conn = libvirt.open('qemu:///system')
        self.ids = iter(range(0x7b000000, 0x7fffffff))

    def close(self):
        self.undo_glance()
        self.conn.close()
        shutil.rmtree(self.work, ignore_errors=True)

    # -- setup ------------------------------------------------------------
    def driver(self, kernel_choice, assets=None):
        localboot.configure(self.work, assets or self.args.assets,
                            virt_type='qemu', guest_kernel=kernel_choice)
        return localboot.driver()

    def instance(self, image_id):
        n = next(self.ids)
        return localboot.instance(self.ctx, self.glance.show(None, image_id),
                                  n, 'bench-%x' % n)

    # -- scenarios --------------------------------------------------------
    def spawn_until(self, drv, image_id, needle_fmt, keep=False):
        inst = self.instance(image_id)
        needle = needle_fmt.replace('{uuid}', inst.uuid).encode()
        t0 = time.monotonic()
        try:
            drv.spawn(self.ctx, inst, self.glance.image_meta(image_id), [],
                      None, {})
            ok = boot_demo.wait_for(
                lambda: needle in drv.get_console_output(self.ctx, inst),
                180)
            elapsed = time.monotonic() - t0
        except Exception as e:
            print('  spawn failed: %s' % e)
            ok, elapsed = False, None
        if not keep:
            drv.destroy(self.ctx, inst, None)
        return (elapsed if ok else None), inst

    def floor(self, drv, image_path):
        inst = self.instance(self.disk_image)
        a = drv.assets.load()
        boot = drv.boot_config(inst)
        cmdline = domain.kernel_cmdline(
            inst, self.glance.image_meta(self.disk_image), boot)
        return boot_demo.qemu_floor(a, image_path, self.work, 'qemu',
                                    cmdline)

    def fullvm_image(self):
        """An MBR disk with extlinux, the distribution kernel and an
        initramfs with the PCI virtio drivers, and the test rootfs."""
        path = os.path.join(samples.cache_dir(), 'fullvm.raw')
        if os.path.exists(path):
            return path
        work = os.path.join(self.work, 'fullvm')
        os.makedirs(work)
        distro = guest_assets.AssetStore(self.args.assets,
                                         'distribution').load()
        deb = debian.fetch_kernel_deb(work, log=lambda _m: None)
        moddir = debian.unpack_kernel(deb, work).moddir
        with open(debian.BUSYBOX, 'rb') as f:
            initrd = build.pack_initramfs(
                f.read(), debian.load_modules(moddir, FULLVM_MODULES))
        fs = os.path.join(work, 'fs.raw')
        shutil.copy(samples.disk_image('fs'), fs)
        subprocess.run(['resize2fs', '-f', fs, '96M'], check=True,
                       capture_output=True)
        mnt = os.path.join(work, 'mnt')
        os.makedirs(mnt)
        subprocess.run(['mount', '-o', 'loop', fs, mnt], check=True)
        try:
            os.makedirs(os.path.join(mnt, 'boot'), exist_ok=True)
            shutil.copy(distro.kernel, os.path.join(mnt, 'boot/vmlinuz'))
            with open(os.path.join(mnt, 'boot/initrd.img'), 'wb') as f:
                f.write(initrd)
            with open(os.path.join(mnt, 'boot/extlinux.conf'), 'w') as f:
                f.write('DEFAULT linux\nTIMEOUT 0\nPROMPT 0\nLABEL linux\n'
                        '  KERNEL /boot/vmlinuz\n  INITRD /boot/initrd.img\n'
                        '  APPEND console=ttyS0 quiet panic=1 '
                        'nova_clear.uuid=fullvm\n')
            subprocess.run(['extlinux', '--install',
                            os.path.join(mnt, 'boot')], check=True,
                           capture_output=True)
        finally:
            subprocess.run(['umount', mnt], check=True)
        size = os.path.getsize(fs)
        with open(path + '.tmp', 'wb') as out, open(fs, 'rb') as src:
            out.write(samples.mbr(2048, size // 512))
            out.seek(MiB)
            shutil.copyfileobj(src, out)
        with open('/usr/lib/EXTLINUX/mbr.bin', 'rb') as f:
            code = f.read(440)
        with open(path + '.tmp', 'r+b') as out:
            out.write(code)
        os.replace(path + '.tmp', path)
        shutil.rmtree(work, ignore_errors=True)
        return path

    def fullvm(self, image):
        """Boot like nova's libvirt driver (its XML, its devices)."""
        name = 'bench-fullvm-%x' % next(self.ids)
        disk = os.path.join(self.work, name + '.qcow2')
        log = os.path.join(self.work, name + '.log')
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b',
                        image, '-F', 'raw', disk, '1G'], check=True)
        xml = f"""<domain type='qemu'><name>{name}</name>
<memory unit='MiB'>128</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
<features><acpi/><apic/></features><clock offset='utc'/>
<devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'
 cache='none'/><source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
<serial type='file'><source path='{log}'/></serial>
<input type='tablet' bus='usb'/>
<graphics type='vnc' autoport='yes' listen='127.0.0.1'/>
<video><model type='virtio'/></video>
<memballoon model='virtio'/>
<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
</devices></domain>"""
        t0 = time.monotonic()
        dom = self.conn.createXML(xml, 0)
        try:
            ok = boot_demo.wait_for(
                lambda: os.path.exists(log) and
                b'nova-clear: ready fullvm' in _read(log), 240)
            elapsed = time.monotonic() - t0
            pss = _qemu_mem(name, 'Pss')
        finally:
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass
            os.unlink(disk)
        return (elapsed if ok else None), pss

    def memory(self, drv, count):
        insts = []
        try:
            for _ in range(count):
                _t, inst = self.spawn_until(drv, self.disk_image,
                                            'nova-clear: ready {uuid}',
                                            keep=True)
                insts.append(inst)
            time.sleep(3)
            per = [_qemu_mem(i.uuid, 'Pss') for i in insts]
            return {'instances': count,
                    'pss_total_mib': round(sum(per), 1),
                    'pss_per_instance_mib': round(sum(per) / count, 1)}
        finally:
            for inst in insts:
                drv.destroy(self.ctx, inst, None)

    def concurrency(self, drv, count):
        insts = [self.instance(self.disk_image) for _ in range(count)]
        meta = self.glance.image_meta(self.disk_image)

        def one(inst):
            t0 = time.monotonic()
            drv.spawn(self.ctx, inst, meta, [], None, {})
            needle = ('nova-clear: ready %s' % inst.uuid).encode()
            if not boot_demo.wait_for(
                    lambda: needle in drv.get_console_output(self.ctx, inst),
                    300):
                raise RuntimeError('no readiness line')
            return time.monotonic() - t0

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            futs = [pool.submit(one, i) for i in insts]
            results = []
            for f in futs:
                try:
                    results.append(f.result())
                except Exception as e:
                    print('  concurrent spawn failed: %s' % e)
                    results.append(None)
        total = time.monotonic() - t0
        for inst in insts:
            try:
                drv.destroy(self.ctx, inst, None)
            except Exception:
                pass
        return {'spawns': count, 'all_ready_s': round(total, 3),
                'failures': results.count(None),
                'each': summary(results)}


def plot(result, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    boots = [(k, v) for k, v in result['boot'].items() if v]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5),
                                   gridspec_kw={'width_ratios': [3, 1]})
    names = [k for k, _ in boots]
    med = [v['median'] for _, v in boots]
    err = [[v['median'] - v['min'] for _, v in boots],
           [v['max'] - v['median'] for _, v in boots]]
    ax1.bar(names, med, yerr=err, capsize=4,
            color=['#4477aa' if n.startswith('driver') else
                   '#88ccee' if n.startswith('floor') else
                   '#44aa99' if n.startswith('container') else '#cc6677'
                   for n in names])
    ax1.set_ylabel('seconds to readiness line (median, min-max)')
    ax1.set_title('Boot, %s, %d iteration(s)' % (
        result['virt_type'], result['iterations']))
    ax1.tick_params(axis='x', rotation=30)
    mem = result.get('memory') or {}
    labels, vals = [], []
    for key, m in mem.items():
        labels.append(key)
        vals.append(m['pss_per_instance_mib'])
    ax2.bar(labels, vals, color='#999933')
    ax2.set_ylabel('QEMU PSS per instance (MiB)')
    ax2.set_title('Memory')
    ax2.tick_params(axis='x', rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--iterations', type=int, default=5)
    parser.add_argument('--smoke', action='store_true',
                        help='one iteration, 3 concurrent spawns, memory '
                             'with 1 and 3 instances')
    parser.add_argument('--concurrency', type=int, default=10)
    parser.add_argument('--machines', action='store_true',
                        help='microvm against q35 (boot time, QEMU RSS) '
                             'only, with each kernel')
    parser.add_argument('--kernel', choices=['minimal', 'distribution'],
                        help='boot only this kernel (default: both, the '
                             'minimal one when it was built)')
    parser.add_argument('--baseline-assets',
                        help='with --machines: also boot the minimal '
                             'kernel of this assets directory on microvm')
    parser.add_argument('--assets', default='/var/lib/nova-clear/guest')
    parser.add_argument('--out', default=os.path.join(
        os.path.dirname(TOOLS), 'bench-results'))
    args = parser.parse_args()
    if args.smoke:
        args.iterations, args.concurrency = 1, 3
    CONF([], project='nova', default_config_files=[])
    if not os.path.exists(os.path.join(args.assets, 'manifest.json')):
        build.build(args.assets)
    kernels = ['distribution']
    if os.path.exists(os.path.join(args.assets, 'minimal',
                                   'manifest.json')):
        kernels.insert(0, 'minimal')
    if args.kernel:
        kernels = [k for k in kernels if k == args.kernel]
    bench = Bench(args)
    try:
        disk_path = samples.disk_image('fs')
        bench.disk_image = bench.glance.add(disk_path, 'raw')
        if args.machines:
            import bench_machines
            return bench_machines.machine_variants(
                bench, kernels, args.iterations, args.out,
                args.baseline_assets)
        container = bench.glance.add(samples.container_image('docker'),
                                     'raw', container_format='docker')
        fullvm_image = bench.fullvm_image()
        drivers = {k: bench.driver(k) for k in kernels}
        boot = {}
        fullvm_pss = []
        for it in range(args.iterations):
            print('iteration %d/%d' % (it + 1, args.iterations))
            for k, drv in drivers.items():
                CONF.set_override('guest_kernel', k, group='clear')
                boot.setdefault('floor-' + k, []).append(
                    bench.floor(drv, disk_path))
                boot.setdefault('driver-' + k, []).append(
                    bench.spawn_until(drv, bench.disk_image,
                                      'nova-clear: ready {uuid}')[0])
                boot.setdefault('container-' + k, []).append(
                    bench.spawn_until(drv, container, 'container says')[0])
            t, pss = bench.fullvm(fullvm_image)
            boot.setdefault('fullvm', []).append(t)
            fullvm_pss.append(pss)
            print('  ' + ', '.join(
                '%s=%s' % (k, 'FAIL' if v[-1] is None else '%.2f' % v[-1])
                for k, v in boot.items()))
        best = kernels[0]
        CONF.set_override('guest_kernel', best, group='clear')
        many = 3 if args.smoke else 10
        memory = {
            'clear-1': bench.memory(drivers[best], 1),
            'clear-%d' % many: bench.memory(drivers[best], many),
            'fullvm-1': {'instances': 1,
                         'pss_total_mib': round(max(fullvm_pss), 1),
                         'pss_per_instance_mib': round(max(fullvm_pss), 1)},
        }
        conc = bench.concurrency(drivers[best], args.concurrency)
        probe_dir = os.path.join(bench.work, 'probe')
        os.makedirs(probe_dir)
        kvm_ok = os.path.exists('/dev/kvm') and drivers[best].host.probe_boot(
            'kvm', drivers[best].assets.load(), probe_dir, 15)
        result = {
            'virt_type': 'qemu (TCG)', 'iterations': args.iterations,
            'kernels': {k: d.assets.load().kernel_release
                        for k, d in drivers.items()},
            'boot': {k: summary(v) for k, v in boot.items()},
            'raw': boot, 'memory': memory, 'concurrency': conc,
            'kvm': ('measurable: the probe booted the kernel under KVM'
                    if kvm_ok else 'not measurable on this host: /dev/kvm '
                    'is missing or cannot boot the guest kernel within 15 s '
                    '(kvm-pvm needs PVM-patched guest kernels)'),
            'ksm': 'not measured',
        }
        med = {k: v['median'] for k, v in result['boot'].items() if v}
        ratios = {}
        for k in kernels:
            if 'driver-' + k in med and 'floor-' + k in med:
                ratios['driver/floor (%s)' % k] = round(
                    med['driver-' + k] / med['floor-' + k], 2)
        if 'fullvm' in med and 'driver-' + best in med:
            ratios['fullvm/driver (%s)' % best] = round(
                med['fullvm'] / med['driver-' + best], 2)
        if 'driver-minimal' in med and 'driver-distribution' in med:
            ratios['minimal/distribution (driver)'] = round(
                med['driver-minimal'] / med['driver-distribution'], 2)
        result['ratios'] = ratios
        os.makedirs(args.out, exist_ok=True)
        jpath = os.path.join(args.out, 'boot-bench.json')
        ppath = os.path.join(args.out, 'boot-bench.png')
        with open(jpath, 'w') as f:
            json.dump(result, f, indent=2)
        plot(result, ppath)
        print('\n%-26s %8s %8s %8s' % ('scenario (s)', 'median', 'min', 'max'))
        for k, v in result['boot'].items():
            if v:
                print('%-26s %8.2f %8.2f %8.2f' % (k, v['median'], v['min'],
                                                   v['max']))
        for k, v in memory.items():
            print('memory %-19s %8.1f MiB PSS per instance' % (
                k, v['pss_per_instance_mib']))
        print('concurrency: %d spawns, all ready in %.2f s, %d failures' % (
            conc['spawns'], conc['all_ready_s'], conc['failures']))
        for k, v in ratios.items():
            print('ratio %-30s %.2f' % (k, v))
        print('KVM: %s' % result['kvm'])
        print('wrote %s and %s' % (jpath, ppath))
        failures = sum(v.count(None) for v in boot.values()) + \
            conc['failures']
        return 1 if failures else 0
    finally:
        bench.close()


if __name__ == '__main__':
    sys.exit(main())
