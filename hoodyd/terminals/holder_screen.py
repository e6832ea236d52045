"""Where a holder started before the holder became a package (`hoodyd/terminals/holder.py`)
finds its screen: such a holder, adopted after an upgrade, imports this module on its first
screen request. New holders import `hoodyd.terminals.holder.screen` itself."""

from __future__ import annotations

from hoodyd.terminals.holder.screen import HolderScreen

__all__ = ["HolderScreen"]
