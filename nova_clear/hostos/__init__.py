"""Host OS tooling: a monolithic, versioned OS image updated by deltas.

Layers, each knowing only the ones below (as in OSTree):
``manifest``/``signing`` (formats) -> ``store`` (content-addressed files)
-> ``delta``/``pack`` (binary deltas) -> ``bake`` (publisher) and
``fetch`` -> ``stage`` (snapshots) -> ``boot`` (boot state) ->
``updater`` (the host's flow) -> ``cli``.
"""
