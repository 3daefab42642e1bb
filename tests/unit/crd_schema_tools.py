"""Pure helpers over ``crds/``, ``examples/`` and the invalid-object fixtures.

Used by the unit contract tests, and by cluster tests that assert the real API server rejects every
fixture with its message. Run it to list every CEL rule with the fixtures that break it::

    .venv/bin/python -m tests.unit.crd_schema_tools

Invalid fixtures (``tests/cluster/fixtures/invalid/*.yaml``) carry their expectations as comments:

* ``# expect: <substring of the API server's error message>`` (required);
* ``# operation: update`` (optional): the file holds two documents; apply the first (valid), then
  the second, which must be rejected. Without it the single document must be rejected on create.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

REPO_ROOT = Path(__file__).resolve().parents[2]
CRDS_DIR = REPO_ROOT / "crds"
EXAMPLES_DIR = REPO_ROOT / "examples"
INVALID_FIXTURES_DIR = REPO_ROOT / "tests" / "cluster" / "fixtures" / "invalid"
DOCS_CRDS = REPO_ROOT / "docs" / "crds.md"

_EXPECT = re.compile(r"^# expect: (?P<text>.+?)\s*$", re.MULTILINE)
_OPERATION = re.compile(r"^# operation: (?P<op>create|update)\b", re.MULTILINE)

Schema = dict[str, Any]


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def load_crds() -> dict[str, dict[str, Any]]:
    """CRD documents keyed by kind."""
    crds: dict[str, dict[str, Any]] = {}
    for path in sorted(CRDS_DIR.glob("*.yaml")):
        for doc in load_yaml_documents(path):
            crds[doc["spec"]["names"]["kind"]] = doc
    return crds


def served_version(crd: Mapping[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return dict(version)


def openapi_schema(crd: Mapping[str, Any]) -> Schema:
    return dict(served_version(crd)["schema"]["openAPIV3Schema"])


@dataclass(frozen=True)
class CelRule:
    kind: str
    path: str  # dotted path of the schema node carrying the rule, e.g. "spec.window"
    rule: str
    message: str


def iter_cel_rules(schema: Mapping[str, Any], kind: str, path: str = "") -> Iterator[CelRule]:
    for rule in schema.get("x-kubernetes-validations", ()):
        yield CelRule(kind=kind, path=path or "<root>", rule=rule["rule"], message=rule.get("message", ""))
    for name, child in schema.get("properties", {}).items():
        yield from iter_cel_rules(child, kind, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), Mapping):
        yield from iter_cel_rules(schema["items"], kind, f"{path}[]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from iter_cel_rules(schema["additionalProperties"], kind, f"{path}{{}}")


def all_cel_rules() -> list[CelRule]:
    return [rule for kind, crd in load_crds().items() for rule in iter_cel_rules(openapi_schema(crd), kind)]


@dataclass(frozen=True)
class InvalidFixture:
    path: Path
    expect: str
    operation: str  # "create" or "update"
    documents: tuple[dict[str, Any], ...]

    @property
    def invalid_object(self) -> dict[str, Any]:
        return self.documents[-1]

    @property
    def kind(self) -> str:
        return str(self.invalid_object["kind"])


def load_invalid_fixtures() -> list[InvalidFixture]:
    fixtures = []
    for path in sorted(INVALID_FIXTURES_DIR.glob("*.yaml")):
        text = path.read_text()
        expect = _EXPECT.search(text)
        if expect is None:
            raise ValueError(f"{path}: missing '# expect: <message substring>' comment")
        operation = _OPERATION.search(text)
        docs = tuple(load_yaml_documents(path))
        op = operation.group("op") if operation else "create"
        wanted = 2 if op == "update" else 1
        if len(docs) != wanted:
            raise ValueError(f"{path}: {op} fixture must hold {wanted} document(s), found {len(docs)}")
        fixtures.append(InvalidFixture(path=path, expect=expect.group("text"), operation=op, documents=docs))
    return fixtures


def load_examples() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(EXAMPLES_DIR.glob("*.yaml")) for doc in load_yaml_documents(path)]


# --- Pydantic JSON schema, normalised to compare with a CRD schema -----------------------------------


def model_schema(model: type[BaseModel]) -> Schema:
    """The model's validation JSON schema by alias, with ``$ref`` inlined and ``X | None`` unwrapped."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return resolve(merged)
        if "anyOf" in node:
            options = [o for o in node["anyOf"] if o != {"type": "null"}]
            if len(options) == 1:
                rest = {k: v for k, v in node.items() if k != "anyOf"}
                return resolve({**options[0], **rest})
        return {k: resolve(v) for k, v in node.items() if k != "$defs"}

    resolved: Schema = resolve(raw)
    return resolved


# Keywords compared whenever either side declares them (a bound on one side only is drift too).
_COMPARED_KEYWORDS = (
    "type",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "maxProperties",
)
# Keywords compared only when both sides declare them (pydantic has no int64, a CRD no null default).
_COMPARED_IF_BOTH = ("format",)
# Root properties the API machinery owns; the models type them loosely on purpose.
_SKIPPED_ROOT_PROPERTIES = frozenset({"apiVersion", "kind", "metadata"})


def schema_drift(crd: Mapping[str, Any], model: Mapping[str, Any], path: str = "") -> list[str]:
    """Differences between a CRD schema node and a normalised model schema node."""
    where = path or "<root>"
    problems: list[str] = []
    for key in _COMPARED_KEYWORDS:
        crd_value, model_value = crd.get(key), model.get(key)
        if key == "enum" and crd_value is not None and model_value is not None:
            crd_value, model_value = sorted(crd_value), sorted(model_value)
        if crd_value != model_value:
            problems.append(f"{where}: {key} differs: crd={crd_value!r} model={model_value!r}")
    for key in _COMPARED_IF_BOTH:
        if key in crd and key in model and crd[key] != model[key]:
            problems.append(f"{where}: {key} differs: crd={crd[key]!r} model={model[key]!r}")
    if "default" in crd and crd["default"] != model.get("default"):
        problems.append(f"{where}: default differs: crd={crd['default']!r} model={model.get('default')!r}")

    crd_props: Mapping[str, Any] = crd.get("properties", {})
    model_props: Mapping[str, Any] = model.get("properties", {})
    if crd_props or model_props:
        skipped = _SKIPPED_ROOT_PROPERTIES if not path else frozenset()
        crd_names, model_names = set(crd_props) - skipped, set(model_props) - skipped
        for missing in sorted(crd_names - model_names):
            problems.append(f"{where}: property {missing!r} is in the CRD but not in the model")
        for extra in sorted(model_names - crd_names):
            problems.append(f"{where}: property {extra!r} is in the model but not in the CRD")
        crd_required, model_required = set(crd.get("required", ())), set(model.get("required", ()))
        if crd_required != model_required:
            problems.append(
                f"{where}: required differs: crd={sorted(crd_required)} model={sorted(model_required)}"
            )
        for name in sorted(crd_names & model_names):
            problems += schema_drift(crd_props[name], model_props[name], f"{path}.{name}" if path else name)
    crd_map, model_map = crd.get("additionalProperties"), model.get("additionalProperties")
    if isinstance(crd_map, Mapping):
        if not isinstance(model_map, Mapping):
            problems.append(f"{where}: the CRD declares a map, the model does not")
        else:
            problems += schema_drift(crd_map, model_map, f"{path}{{}}")
    if isinstance(crd.get("items"), Mapping) and isinstance(model.get("items"), Mapping):
        problems += schema_drift(crd["items"], model["items"], f"{path}[]")
    return problems


# --- A small structural-schema validator (no CEL) -----------------------------------------------------

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}


def schema_errors(value: Any, schema: Mapping[str, Any], path: str = "") -> list[str]:
    """OpenAPI checks the API server applies before CEL: types, required, enums, bounds, patterns.

    Enough to check examples and fixtures offline; the cluster tests are the real authority.
    """
    where = path or "<root>"
    expected = schema.get("type")
    if expected is not None:
        ok = isinstance(value, _JSON_TYPES[expected]) and not (
            expected in {"integer", "number"} and isinstance(value, bool)
        )
        if not ok:
            return [f"{where}: expected {expected}, got {type(value).__name__}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: Unsupported value: {json.dumps(value)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where} in body should be greater than or equal to {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where} in body should be less than or equal to {schema['maximum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: longer than {schema['maxLength']}")
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            errors.append(f"{where} in body should match '{schema['pattern']}'")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where} in body should have at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{where}: Too many: {len(value)}: must have at most {schema['maxItems']} items")
        keys = schema.get("x-kubernetes-list-map-keys")
        if schema.get("x-kubernetes-list-type") == "map" and keys:
            seen = [tuple(item.get(k) for k in keys) for item in value if isinstance(item, dict)]
            if len(seen) != len(set(seen)):
                errors.append(f"{where}: Duplicate value")
        if schema.get("x-kubernetes-list-type") == "set" and len(value) != len({repr(v) for v in value}):
            errors.append(f"{where}: Duplicate value")
        for index, item in enumerate(value):
            errors += schema_errors(item, schema.get("items", {}), f"{where}[{index}]")
    if isinstance(value, dict):
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            errors.append(f"{where}: more than {schema['maxProperties']} properties")
        for name in schema.get("required", ()):
            if name not in value:
                errors.append(f"{path + '.' if path else ''}{name}: Required value")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, child in value.items():
            child_path = f"{path}.{name}" if path else name
            if name in props:
                errors += schema_errors(child, props[name], child_path)
            elif isinstance(extra, Mapping):
                errors += schema_errors(child, extra, child_path)
            elif props:
                errors.append(f'{child_path}: unknown field "{name}" (pruned by the API server)')
    return errors


def main() -> None:
    fixtures = load_invalid_fixtures()
    for rule in all_cel_rules():
        samples = [f for f in fixtures if f.kind == rule.kind and f.expect in rule.message]
        print(f"{rule.kind} {rule.path}\n  rule:    {rule.rule}\n  message: {rule.message}")
        for sample in samples:
            print(f"  sample:  {sample.path.relative_to(REPO_ROOT)} ({sample.operation})")
        if not samples:
            print("  sample:  MISSING")


if __name__ == "__main__":
    main()
