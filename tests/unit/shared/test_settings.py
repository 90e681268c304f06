"""Settings: conversion, validation, and agreement with the sample and the README."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.errors import SettingsError
from shared.settings import SETTINGS, QuarantineMode, Settings, UnknownAvMode


def test_defaults_are_safe() -> None:
    settings = Settings.from_env({})

    assert settings.quarantine_mode is QuarantineMode.DRY_RUN
    assert settings.dry_run
    assert not settings.kill_switch
    assert not settings.allow_windows_server
    assert settings.unknown_av_mode is UnknownAvMode.SKIP
    assert settings.defender_cloud == "global"


def test_dataclass_defaults_match_declared_defaults() -> None:
    """Settings() and Settings.from_env({}) must mean the same product."""
    assert Settings() == Settings.from_env({})


def test_values_are_converted() -> None:
    settings = Settings.from_env(
        {
            "QUARANTINE_MODE": "ENFORCE",
            "QUARANTINE_KILL_SWITCH": "yes",
            "MAX_DEVICES_PER_FILE_PER_HOUR": "7",
            "DEFENDER_API_URL": "http://127.0.0.1:8650/",
            "DEFENDER_READ_TIMEOUT_SECONDS": "2.5",
            "EXCLUDED_SHA1S": " AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA , ",
            "TRUSTED_PUBLISHERS": "Contoso, Ltd.;Fabrikam Inc",
            "EXCLUDED_PATH_PATTERNS": r"C:\Tools\*;D:\Build\*",
            "ALLOWED_DETECTION_SOURCES": "EDR, Antivirus",
        }
    )

    assert settings.quarantine_mode is QuarantineMode.ENFORCE
    assert not settings.dry_run
    assert settings.kill_switch
    assert settings.max_devices_per_file_per_hour == 7
    assert settings.defender_api_url == "http://127.0.0.1:8650"
    assert settings.read_timeout_seconds == 2.5
    assert settings.excluded_sha1s == frozenset({"a" * 40})
    assert settings.trusted_publishers == frozenset({"contoso, ltd.", "fabrikam inc"})
    assert settings.excluded_path_patterns == (r"c:\tools\*", r"d:\build\*")
    assert settings.allowed_detection_sources == frozenset({"edr", "antivirus"})


def test_every_problem_is_named_at_once_without_secret_values() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {
                "QUARANTINE_MODE": "sometimes",
                "MAX_DEVICES_PER_FILE_PER_HOUR": "0",
                "DEFENDER_API_URL": "ftp://example",
                "DEFENDER_CLOUD": "mars",
                "EXCLUDED_DEVICE_IDS": "not-an-id",
                "DEFENDER_CLIENT_SECRET": "s3cr3t-value",
            }
        )

    problems = caught.value.problems
    named = sorted(problem.split(":")[0] for problem in problems)
    assert named == [
        "DEFENDER_API_URL",
        "DEFENDER_CLOUD",
        "EXCLUDED_DEVICE_IDS",
        "MAX_DEVICES_PER_FILE_PER_HOUR",
        "QUARANTINE_MODE",
    ]
    assert "s3cr3t-value" not in str(caught.value)
    assert "not-an-id" not in str(caught.value)


def test_repr_hides_secrets() -> None:
    settings = Settings.from_env(
        {"DEFENDER_TOKEN": "tok-123", "DEFENDER_CLIENT_SECRET": "sec-456"}
    )

    text = repr(settings)

    assert "tok-123" not in text
    assert "sec-456" not in text
    assert "<set>" in text


def test_sample_settings_declare_every_setting_and_only_those(repo: Path) -> None:
    sample = json.loads((repo / "local.settings.sample.json").read_text())

    assert set(sample["Values"]) == {spec.name for spec in SETTINGS}
    assert all(isinstance(value, str) for value in sample["Values"].values())
    assert set(sample["Comments"]) == {spec.group for spec in SETTINGS}


def test_sample_values_are_valid_and_safe(repo: Path) -> None:
    sample = json.loads((repo / "local.settings.sample.json").read_text())

    settings = Settings.from_env(sample["Values"])

    assert settings.dry_run, "the sample must never switch enforcement on"


def test_readme_table_matches_declared_settings(repo: Path) -> None:
    readme = (repo / "README.md").read_text()
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Za-z0-9_]+)` \| ([^|]+) \| (.+) \|$", section, re.M)
    documented = {
        name: (default.strip(), meaning.strip()) for name, default, meaning in rows
    }

    declared = {spec.name: spec for spec in SETTINGS}
    assert set(documented) == set(declared)
    for name, (default, meaning) in documented.items():
        spec = declared[name]
        expected_default = f"`{spec.default}`" if spec.default else "(empty)"
        assert default == expected_default, name
        assert meaning == spec.meaning, name
