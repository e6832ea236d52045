"""What is known about apps: the package sources and their settings, the records they sync
into, the on-disk index, the catalog of sources, profiles and recipes, the syncer and its jobs,
and the release-asset choice. Imports nothing of `search` or `run`."""
