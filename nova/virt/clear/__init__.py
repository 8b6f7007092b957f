"""Shim so that Nova, which loads drivers only under ``nova.virt``, finds
the Clear Containers driver: ``compute_driver = clear.ClearDriver``.

Installed into nova's own environment by a regular (non-editable)
``pip install nova-clear``.
"""

from nova_clear.driver import ClearDriver

__all__ = ['ClearDriver']
