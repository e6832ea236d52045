"""`oci-local-images`: images in the local docker or podman store.

Sync runs `ENGINE image ls --digests --format json`: docker prints one JSON object per line
(`Repository`, `Tag`, `ID`, `Digest`, `Size`, …), podman one JSON array (`Id`, `Names`,
`RepoTags`, `RepoDigests`, `Digest`, `Labels`, …); both are read. `config.engine` picks
docker or podman (default: whichever is on PATH, docker first). Untagged (`<none>`) images
are skipped.

Launch is `ENGINE run --rm -it IMAGE`. When the image has a registry digest, IMAGE is
`repository@sha256:…`, so the engine runs exactly that content and the candidate carries
it as `integrity`; a locally built image has no digest and runs by tag. Images matching
`config.gui` (glob patterns) or labelled `org.hoodyd.kind=gui` are GUI apps: the X11
socket is mounted read-only and DISPLAY passed through.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Mapping
from typing import Any, Literal

import msgspec
from msgspec import Struct

from hoodyd.apps.catalog.records import (
    AppRecord,
    LaunchPlan,
    SourceUnavailable,
    SyncContext,
    SyncResult,
)
from hoodyd.apps.catalog.sources.base import Source, TimeoutS
from hoodyd.apps.catalog.sources.nix import run_cli
from hoodyd.schemas.run import Integrity, Requirement, SourceKind

ENGINES = ("docker", "podman")
GUI_LABEL = "org.hoodyd.kind"
_encoder = msgspec.json.Encoder()


class DockerImage(msgspec.Struct):
    Repository: str = ""
    Tag: str = ""
    ID: str = ""
    Digest: str = ""
    Size: str = ""
    CreatedSince: str = ""


class PodmanImage(msgspec.Struct):
    Id: str = ""
    Names: list[str] | None = None
    RepoTags: list[str] | None = None
    RepoDigests: list[str] | None = None
    Digest: str = ""
    Labels: dict[str, str] | None = None
    Size: int = 0


class Image(msgspec.Struct, frozen=True):
    repository: str
    tag: str
    image_id: str
    digest: str  # "sha256:…" or ""
    size: str
    labels: dict[str, str]


def parse_docker(text: str) -> list[Image]:
    images: list[Image] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            item = msgspec.json.decode(line, type=DockerImage)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise SourceUnavailable(f"docker image ls: not JSON lines: {exc}") from exc
        if item.Repository in ("", "<none>") or item.Tag in ("", "<none>"):
            continue
        digest = item.Digest if item.Digest.startswith("sha256:") else ""
        images.append(Image(item.Repository, item.Tag, item.ID, digest, item.Size, {}))
    return images


def parse_podman(text: str) -> list[Image]:
    try:
        items = msgspec.json.decode(text or "[]", type=list[PodmanImage])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SourceUnavailable(f"podman image ls: not a JSON array: {exc}") from exc
    images: list[Image] = []
    for item in items:
        names = item.Names or item.RepoTags or []
        for name in names:
            repository, _, tag = name.rpartition(":")
            if not repository or "/" in tag or tag == "<none>":
                continue
            images.append(
                Image(
                    repository,
                    tag,
                    item.Id[:12],
                    item.Digest if item.Digest.startswith("sha256:") else "",
                    f"{item.Size / 1e6:.1f}MB" if item.Size else "",
                    dict(item.Labels or {}),
                )
            )
    return images


Engine = Literal["docker", "podman"]


class OciSettings(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The engine whose images are listed (unset: whichever is on PATH, docker first) and
    how long its `image ls` may take; `gui`: glob patterns (one, or a list) of the images
    that are GUI apps."""

    engine: Engine | None = None
    timeout_s: TimeoutS = 60
    gui: str | tuple[str, ...] = ()

    @property
    def gui_patterns(self) -> tuple[str, ...]:
        return (self.gui,) if isinstance(self.gui, str) else self.gui


def pick_engine(wanted: Engine | None, environ: Mapping[str, str]) -> str | None:
    path_value = environ.get("PATH", os.defpath)
    for engine in (wanted,) if wanted else ENGINES:
        if shutil.which(engine, path=path_value):
            return engine
    return None


class OciSource(Source[OciSettings]):
    source_type = "oci-local-images"
    provider: SourceKind = "oci"
    trusted = False
    settings_type = OciSettings

    def detect(self, environ: Mapping[str, str]) -> str | None:
        return None if pick_engine(None, environ) else "neither docker nor podman is on PATH"

    def sync(self, ctx: SyncContext[OciSettings]) -> SyncResult:
        settings = ctx.settings
        engine = pick_engine(settings.engine, ctx.environ)
        if engine is None:
            raise SourceUnavailable(f"{settings.engine or 'docker or podman'} not found on PATH")
        body = run_cli(
            # docker fills Digest only with --digests
            [engine, "image", "ls", "--digests", "--format", "json"],
            ctx,
            timeout=settings.timeout_s,
        ).decode(errors="replace")
        # docker prints JSON lines, podman a JSON array; the first byte tells which
        images = parse_podman(body) if body.lstrip().startswith("[") else parse_docker(body)
        gui = settings.gui_patterns
        records: dict[str, AppRecord] = {}
        for image in images:
            ref = f"{image.repository}:{image.tag}"
            short = image.repository.rsplit("/", 1)[-1]
            is_gui = image.labels.get(GUI_LABEL) == "gui" or any(
                fnmatch.fnmatchcase(ref, pattern) or fnmatch.fnmatchcase(image.repository, pattern)
                for pattern in gui
            )
            extra: list[tuple[str, str]] = [("engine", engine), ("image_id", image.image_id)]
            if image.digest:
                run_ref = f"{image.repository}@{image.digest}"
                integrity = Integrity(url=f"oci://{run_ref}", sha256=image.digest[7:])
                extra.append(("integrity", _encoder.encode(integrity).decode()))
            else:
                run_ref = ref
            extra.append(("image", run_ref))
            records.setdefault(
                ref,
                AppRecord(
                    ident=ref,
                    name=short,
                    title=image.repository,
                    description=f"{engine} image {ref}"
                    + (f" ({image.size})" if image.size else ""),
                    kind="gui" if is_gui else "cli",
                    version=image.tag,
                    keywords=tuple(p for p in image.repository.split("/") if p != short),
                    installed=True,
                    terminal=not is_gui,
                    publisher=image.repository.split("/", 1)[0] if "/" in image.repository else "",
                    extra=tuple(extra),
                ),
            )
        return SyncResult(
            records=[records[k] for k in sorted(records)],
            details={"engine": engine, "images": len(records)},
        )

    def launch_plan(
        self, record: AppRecord, settings: OciSettings, details: Mapping[str, Any]
    ) -> LaunchPlan:
        engine = record.extra_value("engine") or "docker"
        image = record.extra_value("image") or record.ident
        argv = [engine, "run", "--rm", "-it"]
        notes = []
        if record.kind == "gui":
            # the container draws on the host's X server: its socket read-only, DISPLAY as is
            argv += ["--env", "DISPLAY", "--volume", "/tmp/.X11-unix:/tmp/.X11-unix:ro"]
            notes.append("GUI image: the X11 socket is mounted and DISPLAY passed through")
        argv.append(image)
        if "@sha256:" in image:
            notes.append("runs the image by its registry digest")
        requirements = []
        if details.get("engine") and details.get("engine") != engine:
            requirements.append(
                Requirement(kind="command", name=engine, message=f"{engine} is not on PATH")
            )
        return LaunchPlan(argv=argv, requirements=requirements, notes=notes)
