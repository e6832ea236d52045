"""App search and execution planning, in three layers: `catalog` (package sources, records, the
index, sync jobs, the runtime configuration) under `search` (resolution, ranking, candidate
sets) under `run` (candidates, pick, plan, delivery); `service` is the facade over them. No HTTP
here (see `hoodyd.api.run`)."""
