"""Running a found app: candidates with their commands and links, the pick, the policy and the
destructive table, the planner, the one delivery decision and the runner. Imports `search` and
`catalog` below it (and the `hoodyd.apps.service` facade the pick searches through)."""
