"""The per-instance lock every driver operation holds."""

from oslo_concurrency import lockutils


def instance_lock(instance):
    """One operation at a time per instance; different instances proceed
    in parallel (Nova 34 calls drivers from native threads)."""
    return lockutils.lock('nova-clear-instance-%s' % instance.uuid)
