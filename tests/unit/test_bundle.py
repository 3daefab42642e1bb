"""The reference bundle checksum (flightdeck-behaviour 1.2) against its pinned golden values.

The fixtures are the reference's own files, written byte for byte by the tests: the golden bundle
(``tests/fixtures/golden_bundle``: ``release.yaml`` plus ``prompts/s.md``) and the quickstart
baseline release.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flightdeck_operator.engine.bundle import bundle_checksum, bundle_files

GOLDEN_RELEASE_YAML = (
    "api_version: v1\n"
    "kind: Release\n"
    "metadata:\n"
    "  name: t\n"
    "  version: '1'\n"
    "spec:\n"
    "  agent:\n"
    "    agent_id: a\n"
    "  runtime:\n"
    "    provider: openai\n"
    "    model: m\n"
    "  prompts:\n"
    "    system_ref: prompts/s.md\n"
    "  pricing_reference:\n"
    "    provider: openai\n"
    "    pricing_version: p\n"
)
GOLDEN_PROMPT = "line1\nline2\n"
# Pinned by the reference (tests/test_bundle_golden_fixture.py and verified runs).
GOLDEN_DIRECTORY_SHA256 = "d016ae32d4a32667757618f8b76202ff0dfd317b3788401e3ae40622b266469d"
GOLDEN_SINGLE_FILE_SHA256 = "d429e52d92743a7be3aacaf17839206bdcaf40df8b5f69bd61949961f57d566e"
QUICKSTART_BASELINE_SHA256 = "427369e78d4c46cea9cdcfcea667bef348eae372b48939b6dac64d254b601d57"

QUICKSTART_RELEASE_YAML = (
    "api_version: v1\n"
    "kind: Release\n"
    "metadata:\n"
    "  name: support-agent\n"
    "  version: baseline\n"
    "  description: Baseline support agent release.\n"
    "spec:\n"
    "  agent:\n"
    "    agent_id: agent_support\n"
    "  runtime:\n"
    "    provider: openai\n"
    "    model: gpt-4.1-mini\n"
    "    temperature: 0.2\n"
    "    max_output_tokens: 800\n"
    "  prompts:\n"
    "    system_ref: prompts/system.md\n"
    "  pricing_reference:\n"
    "    provider: openai\n"
    "    pricing_version: baseline-pricing\n"
    "  tags:\n"
    "    env: local\n"
    "    example: quickstart\n"
)
QUICKSTART_PROMPT = "You are a support agent that answers customer questions clearly and briefly.\n"


def write_golden_bundle(root: Path) -> Path:
    (root / "prompts").mkdir(parents=True)
    (root / "release.yaml").write_bytes(GOLDEN_RELEASE_YAML.encode())
    (root / "prompts" / "s.md").write_bytes(GOLDEN_PROMPT.encode())
    return root


def write_quickstart_baseline(root: Path) -> Path:
    (root / "prompts").mkdir(parents=True)
    (root / "release.yaml").write_bytes(QUICKSTART_RELEASE_YAML.encode())
    (root / "prompts" / "system.md").write_bytes(QUICKSTART_PROMPT.encode())
    return root


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    return write_golden_bundle(tmp_path / "golden_bundle")


def test_golden_bundle_directory(golden: Path) -> None:
    assert bundle_checksum(golden) == GOLDEN_DIRECTORY_SHA256


def test_golden_bundle_single_file_uses_its_parent_as_base(golden: Path) -> None:
    assert bundle_checksum(golden / "release.yaml") == GOLDEN_SINGLE_FILE_SHA256


def test_quickstart_baseline_bundle(tmp_path: Path) -> None:
    assert bundle_checksum(write_quickstart_baseline(tmp_path / "baseline-release")) == (
        QUICKSTART_BASELINE_SHA256
    )


def test_crlf_and_lone_cr_in_text_files_hash_the_same(golden: Path) -> None:
    (golden / "release.yaml").write_bytes(GOLDEN_RELEASE_YAML.replace("\n", "\r\n").encode())
    (golden / "prompts" / "s.md").write_bytes(b"line1\rline2\r")
    assert bundle_checksum(golden) == GOLDEN_DIRECTORY_SHA256


def test_git_pycache_and_symlinks_are_skipped(golden: Path) -> None:
    (golden / ".git").mkdir()
    (golden / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (golden / "prompts" / "__pycache__").mkdir()
    (golden / "prompts" / "__pycache__" / "x.pyc").write_bytes(b"\x00\x01")
    os.symlink(golden / "prompts" / "s.md", golden / "prompts" / "link.md")
    assert [p.relative_to(golden).as_posix() for p in bundle_files(golden)] == [
        "prompts/s.md",
        "release.yaml",
    ]
    assert bundle_checksum(golden) == GOLDEN_DIRECTORY_SHA256


def test_one_changed_byte_changes_the_checksum(golden: Path) -> None:
    (golden / "prompts" / "s.md").write_bytes(b"line1\nline3\n")
    assert bundle_checksum(golden) != GOLDEN_DIRECTORY_SHA256


def test_binary_files_are_hashed_raw(tmp_path: Path) -> None:
    # CRLF inside a non-text suffix is content, not a line ending: it must change the checksum.
    write_golden_bundle(tmp_path / "a")
    write_golden_bundle(tmp_path / "b")
    (tmp_path / "a" / "model.bin").write_bytes(b"x\r\ny")
    (tmp_path / "b" / "model.bin").write_bytes(b"x\ny")
    assert bundle_checksum(tmp_path / "a") != bundle_checksum(tmp_path / "b")


def test_text_suffix_that_is_not_utf8_is_hashed_raw(tmp_path: Path) -> None:
    write_golden_bundle(tmp_path / "a")
    write_golden_bundle(tmp_path / "b")
    (tmp_path / "a" / "notes.txt").write_bytes(b"\xff\r\n")
    (tmp_path / "b" / "notes.txt").write_bytes(b"\xff\n")
    assert bundle_checksum(tmp_path / "a") != bundle_checksum(tmp_path / "b")


def test_order_is_by_posix_relative_path(tmp_path: Path) -> None:
    # "a/z" sorts before "b": the full relative path, not the file name, decides.
    root = tmp_path / "bundle"
    (root / "a").mkdir(parents=True)
    (root / "a" / "z.md").write_text("1\n")
    (root / "b.md").write_text("2\n")
    assert [p.relative_to(root).as_posix() for p in bundle_files(root)] == ["a/z.md", "b.md"]
