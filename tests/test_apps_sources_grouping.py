"""Candidates from the new sources through the search service: honest integrity and
verified flags that the run policy can act on, and one app from several sources listed
once among the distinct apps while every copy stays pickable."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from hoodyd.apps.run import policy
from hoodyd.apps.service import AppService
from hoodyd.errors import Forbidden
from hoodyd.schemas.run import PolicyConfig, Selector
from tests.data.apps.world import desktop, executable, quiet_settings

FIREFOX_ROW = "\t".join(
    ["org.mozilla.firefox", "Firefox", "133.0", "stable", "x86_64", "flathub", "system",
     "Fast, Private & Safe Web Browser"]
)  # fmt: skip


async def open_world(root: Path) -> AppService:
    bin_dir, tools = root / "bin", root / "tools"
    executable(bin_dir / "firefox")
    desktop(
        root / "applications",
        "org.mozilla.firefox.desktop",
        "[Desktop Entry]\nType=Application\nName=Firefox\nExec=firefox %u\n",
    )
    (tools / "flatpak.tsv").parent.mkdir(parents=True)
    (tools / "flatpak.tsv").write_text(FIREFOX_ROW + "\n")
    executable(
        tools / "flatpak", f"#!/bin/sh\nexec /bin/cat {shlex.quote(str(tools / 'flatpak.tsv'))}\n"
    )
    catalog = root / "catalog.json"
    catalog.write_text(
        json.dumps(
            {
                "version": 1,
                "apps": [
                    {"name": "firefox", "title": "Firefox (catalog)", "sha256": "c" * 64,
                     "homepage": "https://mozilla.org/firefox",
                     "url": "https://example.org/Firefox.AppImage"},
                    {"name": "firefox-nightly", "title": "Firefox Nightly",
                     "url": "https://example.org/nightly.AppImage"},
                ],
            }
        )
    )  # fmt: skip
    sources = [
        {"source_id": "system-path", "enabled": True, "priority": 60, "provider": "system",
         "source_type": "system-path",
         "config": {"path": str(bin_dir), "applications_dirs": [str(root / "applications")]}},
        {"source_id": "flathub", "enabled": True, "priority": 30, "provider": "flatpak",
         "source_type": "flatpak", "config": {"remotes": False}},
        {"source_id": "pinned", "enabled": True, "priority": 20, "provider": "appimage",
         "source_type": "app-image-pinned",
         "config": {"apps": [{"name": "firefox", "title": "Firefox (pinned)",
                              "sha256": "a" * 64, "homepage": "https://www.mozilla.org/firefox/",
                              "url": "https://example.org/firefox-133.AppImage"}]}},
        {"source_id": "catalog", "enabled": True, "priority": 10, "provider": "appimage",
         "source_type": "app-image-catalog", "config": {"path": str(catalog)}},
    ]  # fmt: skip
    state = root / "state"
    (state / "run").mkdir(parents=True)
    (state / "run" / "config.json").write_text(
        json.dumps({"version": 1, "sources": sources, "profiles": []})
    )
    environ = {"PATH": str(tools), "XDG_CACHE_HOME": str(root / "cache"), "HOME": str(root)}
    service = AppService(state, quiet_settings(), environ=environ)
    await service.start()
    done = await service.job(service.sync_all().job_id, wait=True, timeout_ms=30_000)
    assert done.status == "done" and all(
        r["status"] == "ok" for r in done.result["sources"].values()
    ), done
    return service


async def test_integrity_and_verified_reach_the_candidates(short_tmp: Path) -> None:
    """A pinned AppImage is verified with its sha256; a catalogued one has integrity but is
    not verified; an entry without a hash has neither, and the policy refuses it."""
    service = await open_world(short_tmp)
    try:
        found = {c.candidate_id: c for c in service.search(Selector(app="firefox")).candidates}
        pinned = found["pinned:firefox"]
        assert pinned.verified and pinned.integrity is not None
        assert pinned.integrity.sha256 == "a" * 64
        assert pinned.integrity.url == "https://example.org/firefox-133.AppImage"
        catalogued = found["catalog:firefox"]
        assert not catalogued.verified and catalogued.integrity.sha256 == "c" * 64  # type: ignore[union-attr]
        nightly = found["catalog:firefox-nightly"]
        assert nightly.integrity is not None and nightly.integrity.sha256 is None
        strict = policy.effective(PolicyConfig(require_integrity=True, require_verified=True))
        policy.check_candidate(strict, pinned)
        with pytest.raises(Forbidden, match="verified"):
            policy.check_candidate(strict, catalogued)
        with pytest.raises(Forbidden, match="integrity"):
            policy.check_candidate(policy.effective(PolicyConfig(require_integrity=True)), nightly)
        assert found["flathub:org.mozilla.firefox/x86_64/stable"].integrity is None
    finally:
        await service.close()


async def test_one_app_from_many_sources_is_listed_once(short_tmp: Path) -> None:
    """The installed Firefox leads; the flatpak (same app id) and the catalogued AppImage
    (same homepage and name as the pinned one) follow the distinct apps, each saying which
    app it repeats, and every limit still gets the head of one order."""
    service = await open_world(short_tmp)
    try:
        response = service.search(Selector(app="firefox", limit=10))
        order = [c.candidate_id for c in response.candidates]
        leader = order[0]
        assert leader.startswith("system-path:")
        # distinct apps first: the pinned AppImage shares nothing the installed one records
        assert order[1:3] == ["pinned:firefox", "catalog:firefox-nightly"]
        # then the copies: the flatpak by app id, the catalogued AppImage by homepage + name
        assert order[3:] == ["flathub:org.mozilla.firefox/x86_64/stable", "catalog:firefox"]
        by_id = {c.candidate_id: c for c in response.candidates}
        flatpak_reasons = by_id["flathub:org.mozilla.firefox/x86_64/stable"].reasons or []
        assert f"same app as {leader} (app id org.mozilla.firefox); listed after" in flatpak_reasons
        assert any(
            "homepage mozilla.org/firefox" in r for r in by_id["catalog:firefox"].reasons or []
        )
        for limit in (1, 2, 3, 4, 5):
            head = service.search(Selector(app="firefox", limit=limit)).candidates
            assert [c.candidate_id for c in head] == order[:limit]
    finally:
        await service.close()
