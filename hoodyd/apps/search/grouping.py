"""Duplicate grouping: one app offered by several sources (the installed Firefox, its apt
package, the nix package, the flatpak) is listed once among the distinct apps.

Two ranked items from different sources are the same app when they share a desktop or
AppStream id (`firefox.desktop`, `org.mozilla.firefox`), or the same homepage and the same
name. The best-ranked item of a group keeps its place; the others follow the distinct apps,
in rank order, each with a reason naming the item it duplicates. Nothing is dropped, so
every duplicate stays pickable by index or id, and the order stays total and stable.
"""

from __future__ import annotations

from hoodyd.apps.catalog.records import AppRecord
from hoodyd.apps.search.ranking import Scored


def _normal_id(value: str) -> str:
    return value.strip().lower().removesuffix(".desktop")


def _normal_homepage(value: str) -> str:
    url = value.strip().lower()
    for prefix in ("https://", "http://"):
        url = url.removeprefix(prefix)
    return url.removeprefix("www.").rstrip("/")


def group_keys(record: AppRecord) -> list[tuple[str, str]]:
    """What identifies the app behind a record, with the fact that says so."""
    keys: list[tuple[str, str]] = []
    for extra in ("desktop_id", "app_id"):
        value = record.extra_value(extra)
        if value:
            keys.append((f"id:{_normal_id(value)}", f"app id {_normal_id(value)}"))
    if record.homepage:
        home = _normal_homepage(record.homepage)
        if home:
            keys.append(
                (f"home:{home}|{record.name.lower()}", f"homepage {home} and name {record.name}")
            )
    return keys


def group_duplicates(items: list[Scored]) -> tuple[list[Scored], int]:
    """`items` (best first) with every duplicate moved after the distinct apps, and how
    many distinct apps there are."""
    owner: dict[str, Scored] = {}
    leaders: list[Scored] = []
    followers: list[Scored] = []
    for item in items:
        keys = group_keys(item.record)
        leader: Scored | None = None
        because = ""
        for key, fact in keys:
            found = owner.get(key)
            if found is not None and found.source.source_id != item.source.source_id:
                leader, because = found, fact
                break
        if leader is None:
            leaders.append(item)
            for key, _ in keys:
                owner.setdefault(key, item)
            continue
        for key, _ in keys:
            owner.setdefault(key, leader)
        item.reasons.append(f"same app as {leader.candidate_id} ({because}); listed after")
        followers.append(item)
    return leaders + followers, len(leaders)
