"""Live migration between two hosts (``ClearDriver.check_can_live_migrate_*``,
``pre_live_migration``, ``live_migration``, ``post_live_migration*``,
``rollback_live_migration*``, ``live_migration_abort``,
``live_migration_force_complete``), in the shape of nova's libvirt driver
(doc/source/migration.rst).

* **destination, check_can_live_migrate_destination**: a
  ``LibvirtLiveMigrateData``; block migration always (the disks are
  local; ``block_migration=False`` is refused), refused when this host
  already has the instance (its directory or domain).
* **source, check_can_live_migrate_source**: the domain runs, no volumes,
  the destination has room for the disks.
* **source, get_instance_disk_info** (Nova passes it on to
  pre_live_migration): the domain's disks, sizes and backing files.
* **destination, pre_live_migration**: the instance directory; the
  read-only base (disk image or the container's root filesystem, same
  digest) from this host's caches, fetched from Glance when missing; an
  empty qcow2 overlay on it, empty writable disks of the source's sizes
  (libvirt fills them: NON_SHARED_INC); the config drive copied; the
  ports of the destination binding (``migrate_data.vifs``) plugged.  It
  reports its paths in ``migrate_data.filename`` (JSON,
  :func:`dest_facts`; nova's libvirt driver's shared-storage probe file,
  which this driver has no use for: the destination's paths must reach
  the source and LibvirtLiveMigrateData has no other field for them).
* **source, live_migration**: the destination's XML
  (:mod:`nova_clear.live_migration_xml`), libvirt peer-to-peer
  ``migrateToURI3`` in a thread, progress into the Migration record,
  then Nova's ``post_method`` or ``recover_method``.
* **source, post_live_migration**: the console log so far goes to the
  destination as its history (``console.history``); Nova then unplugs
  the source's ports and removes its files (``cleanup``).
* **destination, post_live_migration_at_destination**: late ports, the
  disk I/O limits, the domain XML file.
"""

import json
import os
import tempfile
import threading
import time

from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import excutils
from oslo_utils import netutils
from oslo_utils import units

from nova.compute import power_state
import nova.conf
from nova import exception
from nova.network import model as network_model
from nova import objects
from nova.virt import driver as nova_driver
from nova.virt import images as nova_images
from nova.virt.libvirt import utils as libvirt_utils

from nova_clear.i18n import _
from nova_clear.images import container
from nova_clear import live_migration_xml as lm_xml
from nova_clear import storage
from nova_clear import vif as clear_vif
from nova_clear import vif_plug

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

FACTS_FIELD = 'filename'
MONITOR_INTERVAL = 0.5
PROGRESS_EVERY = 4          # monitor intervals between Migration.save()

# uuid -> {'guest': Guest, 'paused': bool (by force-complete),
# 'was_paused': bool (before the migration)} of migrations in progress here
_active = {}
_active_lock = threading.Lock()


def _precheck(reason):
    return exception.MigrationPreCheckError(reason=reason)


def dest_facts(drv, instance):
    """Where this host keeps the instance's files (the XML's paths)."""
    assets = drv.assets.load()
    return {'host': CONF.host, 'ip': CONF.my_ip,
            'instance_dir': drv._files(instance).dir,
            'image_cache': drv.image_cache.path,
            'kernel': assets.kernel, 'initrd': assets.initrd}


def dest_uri(dest):
    uri = CONF['clear'].live_migration_uri
    return uri % netutils.escape_ipv6(dest) if '%s' in uri else uri


def dest_network_info(network_info, migrate_data):
    """The ports as bound to the destination (Neutron's multiple port
    bindings: ``migrate_data.vifs``), else ``network_info``."""
    if not migrate_data or 'vifs' not in migrate_data or \
            not migrate_data.vifs:
        return network_info
    by_id = {vif['id']: vif for vif in network_info or ()}
    out = []
    for mig in migrate_data.vifs:
        if 'source_vif' not in mig and mig.port_id in by_id:
            mig.source_vif = by_id[mig.port_id]
        out.append(mig.get_dest_vif() if 'source_vif' in mig
                   else by_id[mig.port_id])
    return network_model.NetworkInfo(out)


# -- checks ----------------------------------------------------------------
def check_destination(drv, instance, block_migration, disk_over_commit):
    if block_migration is False:
        raise _precheck(_('the disks of a Clear Container are local to '
                          'its host: live-migrate it with block migration '
                          '(--block-migration, or auto)'))
    if drv._files(instance).exists():
        raise _precheck(_('%s already exists on the destination (a shared '
                          'instances path is not supported)') %
                        drv._files(instance).dir)
    if drv.host.find(instance.uuid) is not None:
        raise _precheck(_('the destination\'s libvirtd already has the '
                          'domain of %s (do both hosts use one '
                          'libvirtd?)') % instance.uuid)
    st = os.statvfs(drv.instances_path)
    data = objects.LibvirtLiveMigrateData(
        block_migration=True, disk_over_commit=bool(disk_over_commit),
        disk_available_mb=st.f_bavail * st.f_frsize // units.Mi,
        is_shared_instance_path=False, is_shared_block_storage=False,
        image_type='clear',
        target_connect_addr=CONF['clear'].live_migration_inbound_addr)
    setattr(data, FACTS_FIELD, json.dumps(dest_facts(drv, instance)))
    return data


def check_source(drv, instance, data, block_device_info=None):
    if nova_driver.block_device_info_get_mapping(block_device_info):
        raise _precheck(_('Clear Containers have no volumes to migrate'))
    guest = drv.host.lookup(instance.uuid)
    if not guest.is_active():
        raise _precheck(_('the domain of %s is not running') %
                        instance.uuid)
    needed = sum(d['disk_size'] for d in _disks(drv, instance)
                 if not d['readonly'])
    avail = data.disk_available_mb if 'disk_available_mb' in data \
        else None
    if avail is not None and not data.disk_over_commit and \
            needed // units.Mi > avail:
        raise _precheck(_('the destination has %(a)d MiB free, the disks '
                          'need %(n)d MiB') % {'a': avail,
                                               'n': needed // units.Mi})
    data.instance_relative_path = instance.uuid
    data.is_shared_instance_path = False
    data.is_shared_block_storage = False
    data.block_migration = True
    return data


def _disks(drv, instance):
    guest = drv.host.lookup(instance.uuid)
    out = []
    for dev, path, fmt, readonly in lm_xml.disks_of(guest.get_xml_desc()):
        info = nova_images.qemu_img_info(path, fmt)
        virt = int(info.virtual_size or 0)
        size = int(info.disk_size or 0)
        out.append({'dev': dev, 'path': path, 'type': fmt,
                    'readonly': readonly, 'virt_disk_size': virt,
                    'disk_size': size,
                    'backing_file': info.backing_file or '',
                    'over_committed_disk_size': max(0, virt - size)})
    return out


def disk_info(drv, instance):
    """get_instance_disk_info: JSON, nova's keys plus dev and readonly."""
    return jsonutils.dumps(_disks(drv, instance))


# -- destination -----------------------------------------------------------
def _fetch_file(src, dst, source_host):
    """The source's read-only file (config drive): a local copy when the
    source is this machine (two hosts on one machine), else pulled from
    the source host through nova's remotefs helper."""
    if os.path.exists(src) and os.path.realpath(src) != \
            os.path.realpath(dst):
        processutils.execute('cp', '--sparse=always', src, dst)
    else:
        libvirt_utils.copy_image(src, dst, host=source_host, receive=True)


def _prepare_disks(drv, context, instance, files, disks):
    image_meta = objects.ImageMeta.from_instance(instance)
    cached = []

    def base():
        if not cached:
            cached.append(drv.image_cache.get(
                context, image_meta,
                claim=lambda c: files.write_image_ref(c.image_id)))
        return cached[0]

    for d in disks:
        name = os.path.basename(d['path'])
        if d['readonly'] and name == 'disk.config':
            _fetch_file(d['path'], files.config_drive, instance.host)
        elif d['readonly']:
            # the container's shared root filesystem: the same digest
            # from this host's cache (rebuilt from the image if missing)
            expected = container.digest_of(d['path'])

            def claim(rootfs, expected=expected):
                if rootfs.digest != expected:
                    raise exception.MigrationPreCheckError(
                        reason=_('image %(i)s unpacks to %(n)s here, the '
                                 'instance runs %(o)s') % {
                                     'i': image_meta.id, 'n': rootfs.digest,
                                     'o': expected})
                files.write_rootfs_ref(rootfs.path)
            drv.rootfs_cache.get(base(), None, claim=claim)
        elif name == 'disk' and d['type'] == 'qcow2':
            opts = []
            if d['backing_file']:
                b = base()
                opts = ['-o', 'backing_file=%s,backing_fmt=%s' % (
                    b.path, b.format)]
            processutils.execute('qemu-img', 'create', '-q', '-f', 'qcow2',
                                 *opts, files.disk, str(d['virt_disk_size']))
        elif d['type'] == 'raw' and (name == 'upper' or name == storage.
                                     SWAP_NAME or storage.ephemeral_index(
                                         name) is not None):
            # filled by the block migration
            with open(os.path.join(files.dir, name), 'wb') as f:
                f.truncate(d['virt_disk_size'])
        else:
            raise _precheck(_('disk %(d)s (%(p)s) cannot be live-migrated')
                            % {'d': d['dev'], 'p': d['path']})


def pre_live_migration(drv, context, instance, network_info, disk_info_,
                       migrate_data):
    disks = jsonutils.loads(disk_info_) if isinstance(disk_info_, str) \
        else list(disk_info_ or ())
    nwinfo = dest_network_info(network_info, migrate_data)
    drv._interfaces(instance, nwinfo)
    files = drv._files(instance)
    if files.exists():
        raise exception.DestinationDiskExists(path=files.dir)
    t0 = time.monotonic()
    files.create()
    try:
        _prepare_disks(drv, context, instance, files, disks)
        vif_plug.plug(instance, nwinfo, only='before')
        serial = drv.serial_ports.claim(instance.uuid)
    except Exception:
        with excutils.save_and_reraise_exception():
            LOG.error('Preparing the live migration failed; cleaning up',
                      instance=instance)
            vif_plug.unplug(instance, nwinfo)
            drv.serial_ports.release(instance.uuid)
            files.remove()
    if serial:
        migrate_data.serial_listen_addr = serial[0]
        migrate_data.serial_listen_ports = [serial[1]]
    if CONF['clear'].live_migration_inbound_addr:
        migrate_data.target_connect_addr = \
            CONF['clear'].live_migration_inbound_addr
    setattr(migrate_data, FACTS_FIELD, json.dumps(dest_facts(drv, instance)))
    LOG.info('Prepared for the live migration in %.2fs',
             time.monotonic() - t0, instance=instance)
    return migrate_data


def post_at_destination(drv, instance, network_info):
    guest = drv.host.lookup(instance.uuid)
    _log_completed(instance, guest.job_stats(completed=True))
    vif_plug.plug(instance, network_info, only='after')
    try:
        guest.apply_io_limits()
    except Exception as e:
        LOG.warning('Could not apply the disk I/O limits after the live '
                    'migration: %s', e, instance=instance)
    drv._files(instance).write_domain_xml(guest.get_xml_desc(inactive=True))


def _log_completed(instance, stats):
    """libvirt's figures of the completed migration, as the destination
    has them (tools/bench_migration.py reads this line)."""
    if not stats:
        return
    mib = float(units.Mi)
    LOG.info('Live migration completed: %(t)s ms (libvirt), downtime '
             '%(d)s ms, memory %(m).1f MiB sent in %(i)s iterations, disks '
             '%(k).1f MiB', {
                 't': stats.get('time_elapsed', '?'),
                 'd': stats.get('downtime', '?'),
                 'm': stats.get('memory_processed', 0) / mib,
                 'i': stats.get('memory_iteration', '?'),
                 'k': stats.get('disk_processed', 0) / mib},
             instance=instance)


def rollback_at_destination(drv, instance, network_info, destroy_disks,
                            migrate_data):
    drv._remove_domain(instance)
    vif_plug.unplug(instance, dest_network_info(network_info, migrate_data))
    if destroy_disks:
        drv._files(instance).remove()


def _restore_source(guest, entry):
    """After a failed or cancelled migration: the guest as it was before
    it, paused if it was (:func:`live_migration` resumed it for the
    migration), else running (force-complete paused it)."""
    if not entry or guest is None or not guest.is_active():
        return
    state = guest.get_power_state()
    if entry['was_paused']:
        if state != power_state.PAUSED:
            guest.pause()
    elif entry['paused'] and state == power_state.PAUSED:
        guest.resume()


def rollback_at_source(drv, instance):
    """The guest stays here: as it was before the migration."""
    with _active_lock:
        entry = _active.pop(instance.uuid, None)
    if entry:
        _restore_source(drv.host.find(instance.uuid), entry)


# -- source ----------------------------------------------------------------
def _destination_xml(drv, instance, guest, migrate_data):
    facts = json.loads(getattr(migrate_data, FACTS_FIELD))
    src = dest_facts(drv, instance)
    nwinfo = dest_network_info(instance.get_network_info(), migrate_data)
    serial = None
    if 'serial_listen_ports' in migrate_data and \
            migrate_data.serial_listen_ports:
        serial = (migrate_data.serial_listen_addr,
                  migrate_data.serial_listen_ports[0])
    return lm_xml.destination_xml(
        guest.migratable_xml(),
        [(src['instance_dir'], facts['instance_dir']),
         (src['image_cache'], facts['image_cache'])],
        {src['kernel']: facts['kernel'], src['initrd']: facts['initrd']},
        facts['host'], clear_vif.interfaces(nwinfo), serial)


def _save_progress(instance, migrate_data, stats):
    migration = migrate_data.migration if 'migration' in migrate_data \
        else None
    if migration is None or not stats:
        return
    try:
        for field in ('memory_total', 'memory_processed', 'memory_remaining',
                      'disk_total', 'disk_processed', 'disk_remaining'):
            if field in stats:
                setattr(migration, field, stats[field])
        migration.save()
        total = stats.get('memory_total')
        if total:
            instance.progress = 100 - round(
                stats.get('memory_remaining', 0) * 100 / total)
            instance.save()
    except Exception as e:
        LOG.debug('Could not record the migration\'s progress: %s', e,
                  instance=instance)


def live_migration(drv, context, instance, dest, post_method, recover_method,
                   block_migration, migrate_data):
    guest = drv.host.lookup(instance.uuid)
    try:
        xml = _destination_xml(drv, instance, guest, migrate_data)
        disks = lm_xml.writable_disks(xml)
        addr = migrate_data.target_connect_addr \
            if 'target_connect_addr' in migrate_data else None
        uri = dest_uri(dest)
    except Exception as e:
        LOG.error('Cannot start the live migration to %s: %s', dest, e,
                  instance=instance)
        recover_method(context, instance, dest, migrate_data)
        return
    result = {}
    # A guest paused before (Nova's pause): QEMU 7.2 aborts on the source
    # (bdrv_inactivate_recurse: "!(bs->open_flags & BDRV_O_INACTIVE)")
    # when a stopped VM's NBD block migration completes, as its disks are
    # inactivated twice.  So it runs for the migration and arrives paused
    # (VIR_MIGRATE_PAUSED); a failed one pauses it here again.
    was_paused = guest.get_power_state() == power_state.PAUSED

    def run():
        try:
            if was_paused:
                guest.resume()
            guest.live_migrate(uri, xml, disks,
                               'tcp://%s' % netutils.escape_ipv6(addr)
                               if addr else None, addr, paused=was_paused)
        except Exception as e:
            result['error'] = e

    with _active_lock:
        _active[instance.uuid] = {'guest': guest, 'paused': False,
                                  'was_paused': was_paused}
    if was_paused:
        LOG.info('The guest is paused: it runs for its live migration and '
                 'stays paused at the destination', instance=instance)
    t0 = time.monotonic()
    thread = threading.Thread(target=run, daemon=True,
                              name='live-migration-%s' % instance.uuid)
    thread.start()
    timeout = CONF['clear'].live_migration_completion_timeout
    n = timed_out = 0
    while thread.is_alive():
        thread.join(MONITOR_INTERVAL)
        if not thread.is_alive():
            break
        n += 1
        if n % PROGRESS_EVERY == 0:
            _save_progress(instance, migrate_data, guest.job_stats())
        if timeout and not timed_out and time.monotonic() - t0 > timeout:
            LOG.warning('Live migration not done after %ds: aborting',
                        timeout, instance=instance)
            timed_out = guest.abort_job() or True
    elapsed = time.monotonic() - t0
    err = result.get('error')
    if err is None:
        with _active_lock:
            _active.pop(instance.uuid, None)
        LOG.info('Live migration to %(d)s (%(u)s, disks %(k)s) done in '
                 '%(t).2fs', {'d': dest, 'u': uri, 'k': ','.join(disks),
                              't': elapsed}, instance=instance)
        post_method(context, instance, dest, block_migration, migrate_data)
        return
    if guest.is_abort(err) and not timed_out:
        LOG.warning('Live migration cancelled after %.2fs', elapsed,
                    instance=instance)
        recover_method(context, instance, dest, migrate_data,
                       migration_status='cancelled')
    else:
        LOG.error('Live migration to %(d)s failed after %(t).2fs: %(e)s',
                  {'d': dest, 't': elapsed, 'e': err}, instance=instance)
        recover_method(context, instance, dest, migrate_data)
    with _active_lock:
        # rollback_at_source (Nova calls it from recover_method) restores
        # the guest's state; if it did not run, do it here
        entry = _active.pop(instance.uuid, None)
    try:
        _restore_source(guest, entry)
    except Exception as e:
        LOG.error('Could not restore the guest\'s state after the failed '
                  'live migration: %s', e, instance=instance)


def _active_guest(instance):
    with _active_lock:
        entry = _active.get(instance.uuid)
    if entry is None:
        raise exception.NoActiveMigrationForInstance(
            instance_id=instance.uuid)
    return entry


def abort(instance):
    if not _active_guest(instance)['guest'].abort_job():
        raise exception.NoActiveMigrationForInstance(
            instance_id=instance.uuid)


def force_complete(instance):
    """Pause the guest: no more dirtied memory, the migration converges
    (as nova's libvirt driver without post-copy); it runs again at the
    destination."""
    entry = _active_guest(instance)
    entry['guest'].pause()
    entry['paused'] = True


def post_at_source(drv, instance, migrate_data):
    """post_live_migration: the console log's tail, history included, to
    the destination's ``console.history`` (the destination's console.log
    holds only what the guest printed there)."""
    if not migrate_data or FACTS_FIELD not in migrate_data:
        return
    try:
        facts = json.loads(getattr(migrate_data, FACTS_FIELD))
        data = drv._files(instance).console_tail(
            CONF['clear'].console_log_max_bytes)
        dst = os.path.join(facts['instance_dir'], storage.CONSOLE_HISTORY)
        if os.path.isdir(facts['instance_dir']):
            with open(dst, 'wb') as f:
                f.write(data)
            return
        with tempfile.NamedTemporaryFile(prefix='console-') as tmp:
            tmp.write(data)
            tmp.flush()
            libvirt_utils.copy_image(tmp.name, dst, host=facts['ip'])
    except Exception as e:
        LOG.warning('The console log did not follow the instance: %s', e,
                    instance=instance)
