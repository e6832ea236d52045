"""structlog set-up: the configured level decides which events are built at all."""

from __future__ import annotations

import logging

import pytest
import structlog

from hoodyd import log


def test_enabled_follows_the_configured_level(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before `configure` every level is enabled; after `configure("warning")` info is not."""
    monkeypatch.setattr(log, "_threshold", logging.NOTSET)
    assert log.enabled(logging.DEBUG) and log.enabled(logging.INFO)
    try:
        log.configure("warning", "json", journal=False)
        assert not log.enabled(logging.INFO)
        assert log.enabled(logging.WARNING) and log.enabled(logging.ERROR)
        log.configure("debug", "json", journal=False)
        assert log.enabled(logging.DEBUG)
    finally:
        structlog.reset_defaults()
