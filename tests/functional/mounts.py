"""A small tmpfs mounted for a test: a real "disk full"."""

import os
import subprocess

import fixtures


class SmallDisk(fixtures.Fixture):
    """Mount a tmpfs of ``size`` (e.g. '8m') at ``path`` (created)."""

    def __init__(self, path, size):
        super().__init__()
        self.path = path
        self.size = size

    def _setUp(self):
        os.makedirs(self.path, exist_ok=True)
        subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s' % self.size,
                        'tmpfs', self.path], check=True)
        self.addCleanup(subprocess.run, ['umount', '-l', self.path])
