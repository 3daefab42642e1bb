"""The chart's static promises: its CRDs are the repository's, byte for byte, and its metadata
matches the package it deploys."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from flightdeck_operator import __version__
from flightdeck_operator.api.v1alpha1 import RESOURCES

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "flightdeck-operator"


def test_chart_crds_are_the_repository_crds_byte_for_byte() -> None:
    repo = {path.name: path.read_bytes() for path in sorted((REPO_ROOT / "crds").glob("*.yaml"))}
    chart = {path.name: path.read_bytes() for path in sorted((CHART / "crds").iterdir())}
    assert sorted(chart) == sorted(repo)
    different = [name for name in repo if chart[name] != repo[name]]
    assert different == [], f"copy crds/ into {CHART / 'crds'}: {different} differ"


def test_chart_ships_a_crd_for_every_kind() -> None:
    names = {yaml.safe_load(path.read_text())["metadata"]["name"] for path in (CHART / "crds").glob("*.yaml")}
    assert names == {model.INFO.crd_name for model in RESOURCES}


def test_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__
    assert chart["name"] == "flightdeck-operator"


def test_values_schema_rejects_unknown_top_level_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["additionalProperties"] is False
    # Every default value is declared in the schema (so a typo in values.yaml fails too).
    assert sorted(values) == sorted(schema["properties"])


def test_every_operator_setting_is_documented() -> None:
    from flightdeck_operator.config import OperatorSettings

    operations = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for name in OperatorSettings.model_fields:
        assert f"`FLIGHTDECK_{name.upper()}`" in operations, name
