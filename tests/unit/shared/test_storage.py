"""Which storage account the state goes to, from the settings the host also reads."""

from __future__ import annotations

import pytest

from shared.errors import SettingsError
from shared.settings import Settings
from shared.storage import StorageAccount, backlog_poison_queue_name


def test_no_storage_setting_means_no_account() -> None:
    assert StorageAccount.from_settings(Settings.from_env({})) is None


def test_a_connection_string_names_the_account() -> None:
    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})

    account = StorageAccount.from_settings(settings)

    assert account is not None
    assert account.account_name == "devstoreaccount1"


def test_an_account_name_is_reached_with_the_managed_identity() -> None:
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage__accountName": "contosoquarantine",
            "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
        }
    )

    account = StorageAccount.from_settings(settings)

    assert account is not None
    assert account.account_name == "contosoquarantine"


def test_both_ways_at_once_is_refused() -> None:
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "AzureWebJobsStorage__accountName": "contosoquarantine",
        }
    )

    with pytest.raises(SettingsError, match="keep one"):
        StorageAccount.from_settings(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AzureWebJobsStorage__accountName", "Not_An_Account"),
        ("STATE_TABLE_PREFIX", "9starts-with-a-digit"),
        ("BACKLOG_QUEUE_NAME", "Has--Capitals"),
        ("BACKLOG_QUEUE_NAME", "x" * 57),
        ("API_BUDGET_SHARE_PERCENT", "0"),
        ("API_BUDGET_SHARE_PERCENT", "150"),
        ("MAX_SUBMISSIONS_PER_TARGET", "0"),
    ],
)
def test_storage_and_state_settings_are_validated(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_state_settings_are_converted() -> None:
    settings = Settings.from_env(
        {"API_BUDGET_SHARE_PERCENT": "40", "BACKLOG_QUEUE_NAME": "soc-backlog-2"}
    )

    assert settings.api_budget_share == 0.4
    assert settings.backlog_queue_name == "soc-backlog-2"
    assert backlog_poison_queue_name("soc-backlog-2") == "soc-backlog-2-poison"
