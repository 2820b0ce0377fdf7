"""The original system's published response schemas (tests/original_spec/), checked against our answers.

`check(response)` validates one httpx response of an operation the original declares, for its status code;
answers of operations or statuses it does not declare are left alone (and counted), so a test module can
assert that each declared operation was seen.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

SPEC_PATH = Path(__file__).parent / "original_spec" / "recoupable_openapi.json"


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` (used inside the original's 3.1 files) as JSON Schema's null type."""
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
        elif "$ref" in out:
            out = {"anyOf": [{"$ref": out.pop("$ref")}, {"type": "null"}], **out}
    return out


class OriginalContract:
    def __init__(self, path: Path = SPEC_PATH):
        self.spec = json.loads(path.read_text(encoding="utf-8"))
        root = {"schemas": _nullable(self.spec["schemas"])}
        self.registry = Registry().with_resource("urn:original", Resource.from_contents(
            {"$schema": "https://json-schema.org/draft/2020-12/schema", **root}))
        self.operations = {self._pattern(op): op for op in self.spec["operations"]}
        self.seen: Counter[tuple[str, str]] = Counter()

    @staticmethod
    def _pattern(operation: str) -> re.Pattern:
        method, path = operation.split(" ", 1)
        return re.compile(f"^{method} " + re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(path)).replace("\\{", "{") + "$")

    def operation_of(self, method: str, path: str) -> str | None:
        key = f"{method.upper()} {path}"
        return next((op for pattern, op in self.operations.items() if pattern.match(key)), None)

    def errors(self, method: str, path: str, status: int, body: Any) -> list[str]:
        """Why `body` does not match the original's schema for this operation and status ([] when it does)."""
        operation = self.operation_of(method, path)
        if operation is None:
            return []
        name = self.spec["operations"][operation].get(str(status))
        if name is None:
            return []
        self.seen[(operation, str(status))] += 1
        validator = Draft202012Validator({"$ref": f"urn:original#/schemas/{name}"}, registry=self.registry,
                                         format_checker=FormatChecker())
        return [f"{operation} {status} ({name}) at /{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(body)]

    def check(self, response: httpx.Response) -> None:
        """An httpx response hook: fails the request that got an answer the original's clients could not read."""
        response.read()
        if "application/json" not in response.headers.get("content-type", ""):
            return
        problems = self.errors(response.request.method, response.request.url.path, response.status_code,
                               response.json())
        assert not problems, "answer differs from the original's published schema:\n" + "\n".join(problems)


ORIGINAL = OriginalContract()
