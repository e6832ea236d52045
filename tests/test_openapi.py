"""The canonical OpenAPI documents and the route table describe the same API."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import msgspec
import yaml
from aiohttp.test_utils import TestClient

from hoodyd.api.openapi import SafeLoader, document_json, load_document
from hoodyd.app import create_app
from tests.conftest import make_config, seed_apt_index

METHODS = {"get", "post", "put", "patch", "delete"}


def documents() -> dict[str, dict]:
    specs = resources.files("hoodyd.api.specs")
    return {
        entry.name.removesuffix(".yaml"): yaml.safe_load(entry.read_text())
        for entry in specs.iterdir()
        if entry.name.endswith(".yaml")
    }


def documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for document in documents().values()
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def routed_operations(short_tmp: Path) -> set[tuple[str, str]]:
    app = create_app(make_config(short_tmp))
    found = set()
    for route in app.router.routes():
        if route.method in {"HEAD", "OPTIONS"}:
            continue
        canonical = route.resource.canonical if route.resource else ""
        found.add((route.method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", canonical)))
    return found


def test_every_route_is_documented_and_every_document_path_is_routed(short_tmp: Path) -> None:
    """Routes and OpenAPI paths match exactly, method by method."""
    routed = routed_operations(short_tmp)
    documented = documented_operations()
    assert routed - documented == set(), "routes missing from the OpenAPI documents"
    assert documented - routed == set(), "documented operations with no route"


def test_documents_are_openapi_303_with_unique_operation_ids() -> None:
    """Each area's document declares OpenAPI 3.0.3 and every operation has a unique id."""
    seen: set[str] = set()
    for name, document in documents().items():
        assert document["openapi"] == "3.0.3", name
        for item in document["paths"].values():
            for method, operation in item.items():
                if method in METHODS:
                    assert operation["operationId"] not in seen
                    seen.add(operation["operationId"])
    assert seen


def test_every_schema_reference_resolves() -> None:
    """Every `$ref` in a document points at a component that exists in it."""
    for name, document in documents().items():
        text = yaml.safe_dump(document)
        for ref in set(re.findall(r"#/components/schemas/([\w.-]+)", text)):
            assert ref in document["components"]["schemas"], f"{name}: {ref}"


async def test_documents_are_served_as_yaml_and_json(aiohttp_client, short_tmp: Path) -> None:
    """Each area serves its document as YAML text and as the equivalent JSON."""
    seed_apt_index(short_tmp)
    client: TestClient = await aiohttp_client(create_app(make_config(short_tmp)))
    for name, document in documents().items():
        yaml_path = next(path for path in document["paths"] if path.endswith("/openapi.yaml"))
        as_yaml = await client.get(yaml_path)
        assert as_yaml.status == 200, name
        assert yaml.safe_load(await as_yaml.text()) == document
        as_json = await client.get(yaml_path.replace(".yaml", ".json"))
        assert await as_json.json() == document


def test_every_document_lists_the_one_reason_catalogue() -> None:
    """Each area's error schema enumerates exactly the reasons of `hoodyd.errors.Reason`."""
    from hoodyd.errors import Reason

    for name, document in documents().items():
        schemas = document["components"]["schemas"]
        listed = schemas.get("Reason") or schemas["app_Reason"]
        assert listed["enum"] == sorted(Reason), name


def test_the_served_documents_read_as_the_reference_parser_reads_them() -> None:
    """libyaml's parser (used where PyYAML has it) reads every document exactly as PyYAML's
    pure-Python one does, and the JSON served is that document."""
    assert SafeLoader is yaml.CSafeLoader  # the wheel ships libyaml: the fast path is tested
    for area, reference in documents().items():
        assert load_document(area) == reference, area
        assert msgspec.json.decode(document_json(area)) == reference, area
