"""Program control: the program and quick-start services (`service`, `quickstart`) over the
table, the store, supervisord registration, the observer of what runs and the instances; the
supervisord adapter (`supervisor_client`, `embedded`); process events and webhooks."""
