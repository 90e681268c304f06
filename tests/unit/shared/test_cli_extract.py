"""``defender-quarantine extract``: targets and rejections of message files as JSON."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from shared.cli import main
from tests.conftest import DATA

GRAPH_SAMPLE = DATA / "graph" / "single_alert.json"
MIXED_SAMPLE = DATA / "streaming" / "mixed_good_and_bad.json"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = main(["extract", *args])
    return code, json.loads(capsys.readouterr().out)


def test_extract_prints_targets_with_their_alert_device_file_and_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, document = _run(capsys, str(GRAPH_SAMPLE))

    assert code == 0
    assert set(document) == {"targets", "rejected"}
    assert document["rejected"] == []
    first = document["targets"][0]
    assert {"alert_id", "device_id", "sha1", "evidence", "format"} <= set(first)
    assert first["alert_id"] == "da638535120355001234_1546712345"
    assert first["device_id"] == "7313aee99add6cd71b8890a6299c08927cae5784"
    assert first["sha1"] == "11e9577d7d5abfdcb64f3f0468e068a29301ffdb"
    assert first["evidence"] == "file"
    assert first["format"] == "graph"


def test_extract_exits_zero_and_lists_rejections_of_every_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_bytes(b'{"records": [')

    code, document = _run(capsys, str(MIXED_SAMPLE), str(broken))

    assert code == 0
    assert len(document["targets"]) == 3
    reasons = {(r["source"], r["reason"]) for r in document["rejected"]}
    assert (str(broken), "truncated") in reasons
    assert (str(MIXED_SAMPLE), "invalid_sha1") in reasons
    assert all(
        set(r) == {"source", "reason", "position", "detail"}
        for r in document["rejected"]
    )


def test_extract_reads_standard_input_for_a_dash(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(GRAPH_SAMPLE.read_bytes()))
    monkeypatch.setattr("sys.stdin", stdin)

    code, document = _run(capsys, "-")

    assert code == 0
    assert len(document["targets"]) == 2


def test_extract_without_paths_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["extract"])

    assert exit_info.value.code == 2
    assert "PATH" in capsys.readouterr().err


def test_extract_of_a_missing_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "absent.json"

    code = main(["extract", str(missing)])

    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(missing) in captured.err
