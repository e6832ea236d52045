"""Program control: store, rules, supervisord adapter, process events and webhooks."""
