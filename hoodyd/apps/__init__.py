"""App search and execution planning: package sources, the in-memory index, ranking,
candidate sets, jobs and the runtime configuration. No HTTP here (see `hoodyd.api.run`)."""
