"""The quarantine comment: names the alert and the product, safely and briefly."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.comment import MAX_COMMENT_LENGTH, PRODUCT_NAME, quarantine_comment

PREFIX = "Stop and quarantine file on machine due to alert "
SUFFIX = " (defender-quarantine)"
ID_ROOM = MAX_COMMENT_LENGTH - len(PREFIX) - len(SUFFIX)


def alert_id_in(comment: str) -> str:
    assert comment.startswith(PREFIX)
    assert comment.endswith(SUFFIX)
    return comment[len(PREFIX) : -len(SUFFIX)]


def test_comment_names_alert_and_product() -> None:
    comment = quarantine_comment("da638034938542195558_2006612345")

    assert comment == (
        "Stop and quarantine file on machine due to alert "
        "da638034938542195558_2006612345 (defender-quarantine)"
    )
    assert PRODUCT_NAME in comment


def test_comment_keeps_dots_dashes_and_underscores() -> None:
    comment = quarantine_comment("sn-6092461b.5418_9bae")

    assert alert_id_in(comment) == "sn-6092461b.5418_9bae"


@pytest.mark.parametrize(
    ("alert_id", "shown"),
    [
        ("da1\nInjected: line", "da1_Injected_line"),
        ('da1"; DROP', "da1_DROP"),
        ("da1'<script>", "da1_script_"),
        ("  da1  ", "da1"),
        ("da1\r\n\t\x00end", "da1_end"),
        ("da\u0430123", "da_123"),
        ("alert\u200bid", "alert_id"),
    ],
)
def test_comment_replaces_unsafe_characters(alert_id: str, shown: str) -> None:
    comment = quarantine_comment(alert_id)

    assert alert_id_in(comment) == shown


@pytest.mark.parametrize("alert_id", ["", "   ", "\n\n", "___", "\u0434\u0430", "..."])
def test_comment_names_unknown_when_nothing_readable_is_left(alert_id: str) -> None:
    comment = quarantine_comment(alert_id)

    assert alert_id_in(comment) == "unknown"


def test_comment_keeps_an_id_that_just_fits() -> None:
    alert_id = "a" * ID_ROOM

    comment = quarantine_comment(alert_id)

    assert len(comment) == MAX_COMMENT_LENGTH
    assert alert_id_in(comment) == alert_id


def test_comment_cuts_a_long_id_and_keeps_the_product() -> None:
    alert_id = "a" * 10_000

    comment = quarantine_comment(alert_id)

    assert len(comment) == MAX_COMMENT_LENGTH
    assert comment.endswith(SUFFIX)
    assert alert_id_in(comment) == "a" * (ID_ROOM - 3) + "..."


def test_comment_cuts_an_id_one_past_the_room() -> None:
    comment = quarantine_comment("b" * (ID_ROOM + 1))

    assert len(comment) == MAX_COMMENT_LENGTH
    assert alert_id_in(comment).endswith("b...")


@given(st.text(max_size=12_000))
def test_comment_is_bounded_and_safe_for_any_id(alert_id: str) -> None:
    comment = quarantine_comment(alert_id)

    assert len(comment) <= MAX_COMMENT_LENGTH
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", alert_id_in(comment))
