"""The functional tests' images: nova-clear's sample images
(nova_clear/samples.py), built once per machine into
``$NOVA_CLEAR_TEST_CACHE`` (default ``/var/tmp/nova-clear-test``), and the
guest assets into ``$NOVA_CLEAR_TEST_ASSETS`` (default ``<cache>/assets``).
"""

import os

from nova_clear import samples

CACHE = os.environ.get('NOVA_CLEAR_TEST_CACHE', '/var/tmp/nova-clear-test')


def guest_assets():
    return samples.guest_assets(os.environ.get('NOVA_CLEAR_TEST_ASSETS'),
                                CACHE)


def disk_image(kind):
    return samples.disk_image(kind, CACHE)


def container_image(kind):
    return samples.container_image(kind, CACHE)
