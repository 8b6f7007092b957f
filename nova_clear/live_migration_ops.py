"""The live migration calls of ClearDriver (a mixin, as
:mod:`nova_clear.power`): Nova's contract, delegated to
:mod:`nova_clear.live_migration` under the per-instance lock where the
instance's files change."""

from nova_clear import live_migration
from nova_clear import locking

_instance_lock = locking.instance_lock


class LiveMigrationOperations:

    def check_can_live_migrate_destination(self, context, instance,
                                           src_compute_info, dst_compute_info,
                                           block_migration=False,
                                           disk_over_commit=False):
        return live_migration.check_destination(
            self, instance, block_migration, disk_over_commit)

    def cleanup_live_migration_destination_check(self, context,
                                                 dest_check_data):
        pass

    def check_can_live_migrate_source(self, context, instance,
                                      dest_check_data, block_device_info=None):
        return live_migration.check_source(self, instance, dest_check_data,
                                           block_device_info)

    def get_instance_disk_info(self, instance, block_device_info=None):
        return live_migration.disk_info(self, instance)

    def pre_live_migration(self, context, instance, block_device_info,
                           network_info, disk_info, migrate_data):
        with _instance_lock(instance):
            return live_migration.pre_live_migration(
                self, context, instance, network_info, disk_info,
                migrate_data)

    def live_migration(self, context, instance, dest, post_method,
                       recover_method, block_migration=False,
                       migrate_data=None):
        live_migration.live_migration(self, context, instance, dest,
                                      post_method, recover_method,
                                      block_migration, migrate_data)

    def live_migration_abort(self, instance):
        live_migration.abort(instance)

    def live_migration_force_complete(self, instance):
        live_migration.force_complete(instance)

    def post_live_migration(self, context, instance, block_device_info,
                            migrate_data=None):
        live_migration.post_at_source(self, instance, migrate_data)

    def post_live_migration_at_source(self, context, instance, network_info):
        self.unplug_vifs(instance, network_info)

    def post_live_migration_at_destination(self, context, instance,
                                           network_info,
                                           block_migration=False,
                                           block_device_info=None):
        with _instance_lock(instance):
            live_migration.post_at_destination(self, instance, network_info)

    def rollback_live_migration_at_source(self, context, instance,
                                          migrate_data):
        live_migration.rollback_at_source(self, instance)

    def rollback_live_migration_at_destination(self, context, instance,
                                               network_info,
                                               block_device_info,
                                               destroy_disks=True,
                                               migrate_data=None):
        with _instance_lock(instance):
            live_migration.rollback_at_destination(
                self, instance, network_info, destroy_disks, migrate_data)
