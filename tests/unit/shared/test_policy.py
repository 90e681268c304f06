"""The policy: each rule at its boundary, and the order of the stages."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.policy import (
    FACTS_FROM_API,
    Reason,
    Verdict,
    VerdictKind,
    describe_target,
    guard_target,
    judge_target,
    missing_device_facts,
    needs_device_facts,
    needs_file_facts,
    qualify_target,
    screen_target,
)
from shared.settings import QuarantineMode, Settings, UnknownAvMode
from shared.targets import (
    Alert,
    AlertFormat,
    DeviceFacts,
    EvidenceKind,
    FileFacts,
    Target,
)

DEVICE_ID = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
SHA1 = "87662bc3d60e4200ceaf7aae249d1c343f4b83c9"
ENFORCE = Settings(quarantine_mode=QuarantineMode.ENFORCE)


def make_target(
    *,
    severity: str | None = "high",
    status: str | None = "new",
    detection_source: str | None = "EDR",
    **changes: Any,
) -> Target:
    alert = Alert(
        id="da638034938542195558_2006612345",
        format=AlertFormat.STREAMING,
        severity=severity,
        status=status,
        detection_source=detection_source,
    )
    target = Target(
        alert=alert,
        device_id=DEVICE_ID,
        sha1=SHA1,
        evidence=EvidenceKind.FILE,
        evidence_role="Impacted",
        file_name="payload.exe",
        folder_path=r"C:\Users\bob\Downloads",
    )
    return replace(target, **changes)


def make_device(**changes: Any) -> DeviceFacts:
    device = DeviceFacts(
        device_id=DEVICE_ID,
        os_platform="Windows10",
        os_build=19044,
        os_version="21H2",
        health_status="Active",
        onboarding_status="Onboarded",
        av_mode="0",
        source=FACTS_FROM_API,
    )
    return replace(device, **changes)


def make_file(**changes: Any) -> FileFacts:
    file = FileFacts(sha1=SHA1, source=FACTS_FROM_API)
    return replace(file, **changes)


def qualify(
    *,
    device: DeviceFacts | None = None,
    file: FileFacts | None = None,
    settings: Settings = ENFORCE,
) -> Verdict | None:
    return qualify_target(
        make_target(),
        make_device() if device is None else device,
        make_file() if file is None else file,
        settings,
    )


def reason_of(verdict: Verdict | None) -> Reason | None:
    return None if verdict is None else verdict.reason


# --- Verdict ---------------------------------------------------------------


def test_reason_values_are_their_lower_case_names() -> None:
    mismatched = [reason for reason in Reason if reason.value != reason.name.lower()]

    assert mismatched == []


def test_verdict_defer_without_retry_time_is_refused() -> None:
    with pytest.raises(ValueError, match="retry_at"):
        Verdict(VerdictKind.DEFER, Reason.BUDGET_EXHAUSTED, {}, "no budget")


def test_verdict_skip_with_retry_time_is_refused() -> None:
    with pytest.raises(ValueError, match="retry_at"):
        Verdict(
            VerdictKind.SKIP,
            Reason.DRY_RUN,
            {},
            "dry run",
            retry_at=datetime(2026, 1, 1, tzinfo=UTC),
        )


def test_verdict_defer_with_naive_retry_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        Verdict(
            VerdictKind.DEFER,
            Reason.THROTTLED,
            {},
            "throttled",
            retry_at=datetime(2026, 1, 1),
        )


def test_verdict_facts_are_a_read_only_copy() -> None:
    facts: dict[str, str | int | bool | None] = {"os_platform": "Windows10"}

    verdict = Verdict(VerdictKind.SKIP, Reason.DRY_RUN, facts, "dry run")
    facts["os_platform"] = "Linux"

    assert verdict.facts["os_platform"] == "Windows10"
    with pytest.raises(TypeError):
        verdict.facts["os_platform"] = "Linux"  # type: ignore[index]


def test_verdict_log_fields_carry_verdict_reason_retry_time_and_facts() -> None:
    retry_at = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    verdict = Verdict(
        VerdictKind.DEFER, Reason.THROTTLED, {"attempt": 2}, "429", retry_at=retry_at
    )

    fields = verdict.log_fields()

    assert fields == {
        "verdict": "defer",
        "reason": "throttled",
        "retry_at": "2026-01-01T12:00:00+00:00",
        "attempt": 2,
    }


# --- Screen ----------------------------------------------------------------


def test_screen_passes_an_ordinary_target() -> None:
    assert screen_target(make_target(), ENFORCE) is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"device_id": "not-a-device"}, Reason.INVALID_DEVICE_ID),
        ({"sha1": "abc"}, Reason.INVALID_SHA1),
    ],
)
def test_screen_skips_malformed_identifiers(
    changes: dict[str, Any], reason: Reason
) -> None:
    verdict = screen_target(make_target(**changes), ENFORCE)

    assert reason_of(verdict) is reason


@pytest.mark.parametrize("status", ["resolved", "Resolved", " RESOLVED "])
def test_screen_skips_resolved_alert(status: str) -> None:
    verdict = screen_target(make_target(status=status), ENFORCE)

    assert verdict is not None
    assert verdict.kind is VerdictKind.SKIP
    assert verdict.reason is Reason.ALERT_RESOLVED


@pytest.mark.parametrize(
    ("minimum", "severity", "passes"),
    [
        ("medium", "low", False),
        ("medium", "medium", True),
        ("medium", "High", True),
        ("high", "medium", False),
        ("low", "informational", False),
        ("informational", "informational", True),
    ],
)
def test_screen_compares_severity_with_minimum(
    minimum: str, severity: str, passes: bool
) -> None:
    settings = replace(ENFORCE, min_alert_severity=minimum)

    verdict = screen_target(make_target(severity=severity), settings)

    assert reason_of(verdict) is (None if passes else Reason.BELOW_MIN_SEVERITY)


@pytest.mark.parametrize("severity", [None, "", "unknown", "UnSpecified", "critical"])
def test_screen_skips_unknown_severity_even_at_lowest_minimum(
    severity: str | None,
) -> None:
    settings = replace(ENFORCE, min_alert_severity="informational")

    verdict = screen_target(make_target(severity=severity), settings)

    assert reason_of(verdict) is Reason.SEVERITY_UNKNOWN


@pytest.mark.parametrize(
    ("source", "passes"),
    [("EDR", True), ("edr", True), ("Antivirus", False), (None, False)],
)
def test_screen_allows_only_listed_detection_sources(
    source: str | None, passes: bool
) -> None:
    settings = replace(ENFORCE, allowed_detection_sources=frozenset({"edr"}))

    verdict = screen_target(make_target(detection_source=source), settings)

    assert reason_of(verdict) is (
        None if passes else Reason.DETECTION_SOURCE_NOT_ALLOWED
    )


def test_screen_allows_every_detection_source_when_none_listed() -> None:
    verdict = screen_target(make_target(detection_source=None), ENFORCE)

    assert verdict is None


@pytest.mark.parametrize(
    ("role", "passes"),
    [("Impacted", True), ("IMPACTED", True), ("Related", False), (None, False)],
)
def test_screen_allows_only_listed_evidence_roles(
    role: str | None, passes: bool
) -> None:
    settings = replace(ENFORCE, allowed_evidence_roles=frozenset({"impacted"}))

    verdict = screen_target(make_target(evidence_role=role), settings)

    assert reason_of(verdict) is (None if passes else Reason.EVIDENCE_ROLE_NOT_ALLOWED)


def test_screen_skips_excluded_device_whatever_the_case() -> None:
    settings = replace(ENFORCE, excluded_device_ids=frozenset({DEVICE_ID}))

    verdict = screen_target(make_target(device_id=DEVICE_ID.upper()), settings)

    assert reason_of(verdict) is Reason.EXCLUDED_DEVICE


def test_screen_skips_excluded_sha1_whatever_the_case() -> None:
    settings = replace(ENFORCE, excluded_sha1s=frozenset({SHA1}))

    verdict = screen_target(make_target(sha1=SHA1.upper()), settings)

    assert reason_of(verdict) is Reason.EXCLUDED_SHA1


@pytest.mark.parametrize(
    ("pattern", "folder", "file_name", "excluded"),
    [
        (r"c:\tools\*", r"C:\Tools\sub", "x.exe", True),
        (r"c:\tools\*", r"C:\Toolsbox", "x.exe", False),
        (r"c:\tools", "C:/Tools/", None, True),
        (r"c:\tools", r"C:\Tools\sub", "x.exe", False),
        (r"*\setup?.exe", r"D:\Downloads", "setup1.exe", True),
        (r"*\setup?.exe", r"D:\Downloads", "setup12.exe", False),
        (r"c:\users\*\appdata\*", r"C:\Users\Bob\AppData\Local\Temp", "a.exe", True),
        (r"c:\temp\[x]\*", r"C:\Temp\[x]\inner", "a.exe", True),
        (r"c:\temp\[x]\*", r"C:\Temp\x\inner", "a.exe", False),
        (r"\\fileserver\share\*", r"\\FileServer\Share\apps", "a.exe", True),
    ],
)
def test_screen_matches_excluded_path_patterns(
    pattern: str, folder: str, file_name: str | None, excluded: bool
) -> None:
    settings = replace(ENFORCE, excluded_path_patterns=(pattern,))
    target = make_target(folder_path=folder, file_name=file_name)

    verdict = screen_target(target, settings)

    assert reason_of(verdict) is (Reason.EXCLUDED_PATH if excluded else None)


def test_screen_excluded_path_verdict_names_the_pattern() -> None:
    settings = replace(ENFORCE, excluded_path_patterns=(r"d:\*", r"c:\users\*"))

    verdict = screen_target(make_target(), settings)

    assert verdict is not None
    assert verdict.facts["path_pattern"] == r"c:\users\*"
    assert verdict.facts["folder_path"] == r"C:\Users\bob\Downloads"


@pytest.mark.parametrize("folder", [None, "", "   "])
def test_screen_skips_target_without_path_when_paths_are_excluded(
    folder: str | None,
) -> None:
    settings = replace(ENFORCE, excluded_path_patterns=(r"c:\tools\*",))

    verdict = screen_target(make_target(folder_path=folder), settings)

    assert reason_of(verdict) is Reason.PATH_UNKNOWN


def test_screen_passes_target_without_path_when_no_paths_are_excluded() -> None:
    verdict = screen_target(make_target(folder_path=None), ENFORCE)

    assert verdict is None


# --- Qualify: device -------------------------------------------------------


def test_qualify_passes_an_eligible_device_and_unsigned_file() -> None:
    assert qualify() is None


def test_qualify_skips_when_no_device_facts() -> None:
    verdict = qualify_target(make_target(), None, make_file(), ENFORCE)

    assert reason_of(verdict) is Reason.DEVICE_FACTS_UNKNOWN


@pytest.mark.parametrize(
    ("platform", "build", "reason"),
    [
        ("Windows10", 15063, None),
        ("Windows10", 15062, Reason.OS_BUILD_TOO_OLD),
        ("Windows 10", 19045, None),
        ("windows_10", 15063, None),
        ("Windows11", None, None),
        ("Windows 11", 22631, None),
        ("Linux", None, Reason.OS_PLATFORM_NOT_SUPPORTED),
        ("macOS", None, Reason.OS_PLATFORM_NOT_SUPPORTED),
        ("Windows7", 7601, Reason.OS_PLATFORM_NOT_SUPPORTED),
        ("Windows", 19044, Reason.OS_PLATFORM_NOT_SUPPORTED),
        ("FreeBSD", None, Reason.OS_PLATFORM_NOT_SUPPORTED),
        (None, 19044, Reason.OS_PLATFORM_UNKNOWN),
        ("  ", 19044, Reason.OS_PLATFORM_UNKNOWN),
    ],
)
def test_qualify_judges_platform_and_build(
    platform: str | None, build: int | None, reason: Reason | None
) -> None:
    device = make_device(os_platform=platform, os_build=build, os_version=None)

    verdict = qualify(device=device)

    assert reason_of(verdict) is reason


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        ("1703", None),
        ("1607", Reason.OS_BUILD_TOO_OLD),
        ("21H2", None),
        ("20h2", None),
        ("10.0.19044.1865", None),
        ("10.0.15063", None),
        ("10.0.14393.0", Reason.OS_BUILD_TOO_OLD),
        (None, Reason.OS_BUILD_UNKNOWN),
        ("latest", Reason.OS_BUILD_UNKNOWN),
    ],
)
def test_qualify_reads_windows_10_version_when_build_is_unknown(
    version: str | None, reason: Reason | None
) -> None:
    device = make_device(os_build=None, os_version=version)

    verdict = qualify(device=device)

    assert reason_of(verdict) is reason


def test_qualify_prefers_build_over_version() -> None:
    device = make_device(os_build=14393, os_version="21H2")

    verdict = qualify(device=device)

    assert reason_of(verdict) is Reason.OS_BUILD_TOO_OLD


def test_qualify_skips_windows_server_unless_allowed() -> None:
    device = make_device(os_platform="WindowsServer2019", os_build=17763)

    verdict = qualify(device=device)

    assert reason_of(verdict) is Reason.WINDOWS_SERVER_NOT_ALLOWED


@pytest.mark.parametrize(
    ("platform", "build", "reason"),
    [
        ("WindowsServer2019", 17763, None),
        ("WindowsServer2022", None, None),
        ("Windows Server 2025", None, None),
        ("WindowsServer2012R2", None, None),
        ("WindowsServer2012R2", 9600, None),
        ("WindowsServer2012", None, Reason.OS_BUILD_TOO_OLD),
        ("WindowsServer2008R2", None, Reason.OS_BUILD_TOO_OLD),
        ("WindowsServer1809", None, None),
        ("WindowsServer", 9600, None),
        ("WindowsServer", 9200, Reason.OS_BUILD_TOO_OLD),
        ("WindowsServer", None, Reason.OS_BUILD_UNKNOWN),
    ],
)
def test_qualify_allows_windows_server_2012_r2_and_later_when_allowed(
    platform: str, build: int | None, reason: Reason | None
) -> None:
    settings = replace(ENFORCE, allow_windows_server=True)
    device = make_device(os_platform=platform, os_build=build, os_version=None)

    verdict = qualify(device=device, settings=settings)

    assert reason_of(verdict) is reason


def test_qualify_never_allows_linux_even_with_servers_allowed() -> None:
    settings = replace(ENFORCE, allow_windows_server=True)

    verdict = qualify(device=make_device(os_platform="Linux"), settings=settings)

    assert reason_of(verdict) is Reason.OS_PLATFORM_NOT_SUPPORTED


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("Onboarded", None),
        ("onboarded", None),
        (None, None),
        ("CanBeOnboarded", Reason.DEVICE_NOT_ONBOARDED),
        ("Unsupported", Reason.DEVICE_NOT_ONBOARDED),
        ("InsufficientInfo", Reason.DEVICE_NOT_ONBOARDED),
    ],
)
def test_qualify_requires_onboarded_device_when_known(
    status: str | None, reason: Reason | None
) -> None:
    verdict = qualify(device=make_device(onboarding_status=status))

    assert reason_of(verdict) is reason


@pytest.mark.parametrize(
    ("health", "allow_inactive", "reason"),
    [
        ("Inactive", False, Reason.DEVICE_INACTIVE),
        ("inactive", False, Reason.DEVICE_INACTIVE),
        ("Inactive", True, None),
        ("ImpairedCommunication", False, None),
        ("Active", False, None),
    ],
)
def test_qualify_skips_inactive_device_unless_allowed(
    health: str, allow_inactive: bool, reason: Reason | None
) -> None:
    settings = replace(ENFORCE, allow_inactive_devices=allow_inactive)

    verdict = qualify(device=make_device(health_status=health), settings=settings)

    assert reason_of(verdict) is reason


def test_qualify_skips_device_with_excluded_tag() -> None:
    settings = replace(ENFORCE, excluded_device_tags=frozenset({"vip"}))
    device = make_device(machine_tags=("Finance", " VIP "))

    verdict = qualify(device=device, settings=settings)

    assert verdict is not None
    assert verdict.reason is Reason.EXCLUDED_DEVICE_TAG
    assert verdict.facts["device_tag"] == "vip"


def test_qualify_passes_device_whose_tags_are_not_excluded() -> None:
    settings = replace(ENFORCE, excluded_device_tags=frozenset({"vip"}))

    verdict = qualify(device=make_device(machine_tags=("Finance",)), settings=settings)

    assert verdict is None


def test_qualify_skips_when_tags_are_excluded_and_facts_came_from_alert() -> None:
    settings = replace(ENFORCE, excluded_device_tags=frozenset({"vip"}))

    verdict = qualify(device=make_device(source="alert"), settings=settings)

    assert reason_of(verdict) is Reason.DEVICE_TAGS_UNKNOWN


@pytest.mark.parametrize("av_mode", ["0", "1", "4"])
def test_qualify_passes_running_antivirus(av_mode: str) -> None:
    verdict = qualify(device=make_device(av_mode=av_mode))

    assert verdict is None


@pytest.mark.parametrize("unknown_mode", list(UnknownAvMode))
def test_qualify_skips_disabled_antivirus_whatever_unknown_mode_says(
    unknown_mode: UnknownAvMode,
) -> None:
    settings = replace(ENFORCE, unknown_av_mode=unknown_mode)

    verdict = qualify(device=make_device(av_mode="2"), settings=settings)

    assert reason_of(verdict) is Reason.AV_DISABLED


@pytest.mark.parametrize(
    ("av_mode", "reason"),
    [(None, Reason.AV_DISABLED), ("3", Reason.AV_DISABLED), ("1", None)],
)
def test_qualify_takes_an_alert_saying_antivirus_is_disabled_when_mode_is_unknown(
    av_mode: str | None, reason: Reason | None
) -> None:
    settings = replace(ENFORCE, unknown_av_mode=UnknownAvMode.SUBMIT)
    device = make_device(av_mode=av_mode, av_status="Disabled")

    verdict = qualify(device=device, settings=settings)

    assert reason_of(verdict) is reason


@pytest.mark.parametrize("av_mode", ["3", "5", "", None, "9"])
def test_qualify_skips_unknown_antivirus_mode_by_default(av_mode: str | None) -> None:
    verdict = qualify(device=make_device(av_mode=av_mode))

    assert verdict is not None
    assert verdict.reason is Reason.AV_MODE_UNKNOWN
    assert verdict.facts["av_mode"] == av_mode


@pytest.mark.parametrize("av_mode", ["3", "5", "", None])
def test_qualify_passes_unknown_antivirus_mode_when_set_to_submit(
    av_mode: str | None,
) -> None:
    settings = replace(ENFORCE, unknown_av_mode=UnknownAvMode.SUBMIT)

    verdict = qualify(device=make_device(av_mode=av_mode), settings=settings)

    assert verdict is None


def test_qualify_judges_device_before_file() -> None:
    verdict = qualify_target(
        make_target(), make_device(os_platform="Linux"), None, ENFORCE
    )

    assert reason_of(verdict) is Reason.OS_PLATFORM_NOT_SUPPORTED


def test_qualify_device_verdict_carries_device_facts() -> None:
    device = make_device(os_build=15062)

    verdict = qualify(device=device)

    assert verdict is not None
    assert verdict.facts["os_platform"] == "Windows10"
    assert verdict.facts["os_build"] == 15062
    assert verdict.facts["device_facts_source"] == FACTS_FROM_API


# --- Qualify: file ---------------------------------------------------------


def test_qualify_skips_when_no_file_facts() -> None:
    verdict = qualify_target(make_target(), make_device(), None, ENFORCE)

    assert reason_of(verdict) is Reason.FILE_FACTS_UNKNOWN


@pytest.mark.parametrize(
    ("signer", "issuer", "publisher", "valid", "reason"),
    [
        ("Microsoft Corporation", None, None, True, Reason.MICROSOFT_SIGNED),
        ("Microsoft Windows", None, None, True, Reason.MICROSOFT_SIGNED),
        ("microsoft windows publisher", None, None, True, Reason.MICROSOFT_SIGNED),
        (None, "Microsoft Code Signing PCA 2011", None, True, Reason.MICROSOFT_SIGNED),
        (None, None, "Microsoft Corporation", True, Reason.MICROSOFT_SIGNED),
        ("Microsofty Games Ltd", "Some CA", None, True, None),
        ("Microsoft Corporation", None, None, False, None),
        ("Contoso, Ltd.", "Some CA", None, True, None),
        ("Contoso, Ltd.", "Some CA", None, False, None),
        (None, None, None, None, None),
        (None, None, "Microsoft Corporation", None, None),
        ("Microsoft Corporation", None, None, None, Reason.CERTIFICATE_UNVERIFIED),
        (None, "Microsoft Windows PCA", None, None, Reason.CERTIFICATE_UNVERIFIED),
    ],
)
def test_qualify_judges_file_signature(
    signer: str | None,
    issuer: str | None,
    publisher: str | None,
    valid: bool | None,
    reason: Reason | None,
) -> None:
    file = make_file(
        signer=signer,
        issuer=issuer,
        file_publisher=publisher,
        is_valid_certificate=valid,
    )

    verdict = qualify(file=file)

    assert reason_of(verdict) is reason


@pytest.mark.parametrize(
    ("signer", "publisher", "valid", "reason"),
    [
        ("Contoso, Ltd.", None, True, Reason.TRUSTED_PUBLISHER),
        ("CONTOSO,  LTD.", None, True, Reason.TRUSTED_PUBLISHER),
        (None, "Contoso, Ltd.", True, Reason.TRUSTED_PUBLISHER),
        ("Contoso, Ltd.", None, False, None),
        ("Contoso, Ltd.", None, None, Reason.CERTIFICATE_UNVERIFIED),
        (None, "Contoso, Ltd.", None, None),
        ("Fabrikam Inc", None, True, None),
    ],
)
def test_qualify_judges_trusted_publishers(
    signer: str | None, publisher: str | None, valid: bool | None, reason: Reason | None
) -> None:
    settings = replace(ENFORCE, trusted_publishers=frozenset({"contoso, ltd."}))
    file = make_file(
        signer=signer, file_publisher=publisher, is_valid_certificate=valid
    )

    verdict = qualify(file=file, settings=settings)

    assert reason_of(verdict) is reason


def test_qualify_trusted_publisher_verdict_names_the_publisher() -> None:
    settings = replace(ENFORCE, trusted_publishers=frozenset({"contoso, ltd."}))
    file = make_file(signer="Contoso, Ltd.", is_valid_certificate=True)

    verdict = qualify(file=file, settings=settings)

    assert verdict is not None
    assert verdict.facts["trusted_publisher"] == "contoso, ltd."
    assert verdict.facts["signer"] == "Contoso, Ltd."


def test_qualify_skips_unverified_file_facts_from_alert() -> None:
    file = make_file(source="alert", signer="Contoso, Ltd.")

    verdict = qualify(file=file)

    assert reason_of(verdict) is Reason.FILE_FACTS_UNKNOWN


def test_qualify_judges_verified_file_facts_from_alert() -> None:
    file = make_file(
        source="alert", signer="Microsoft Windows", is_valid_certificate=True
    )

    verdict = qualify(file=file)

    assert reason_of(verdict) is Reason.MICROSOFT_SIGNED


# --- What to fetch ---------------------------------------------------------


def test_missing_device_facts_names_everything_without_a_device() -> None:
    assert needs_device_facts(None)
    assert missing_device_facts(None) == {
        "os_platform",
        "os_build",
        "onboarding_status",
        "health_status",
        "av_mode",
    }


def test_missing_device_facts_is_empty_for_a_complete_api_record() -> None:
    assert missing_device_facts(make_device()) == frozenset()
    assert not needs_device_facts(make_device())


def test_missing_device_facts_names_what_an_alert_did_not_carry() -> None:
    device = DeviceFacts(device_id=DEVICE_ID, os_platform="Windows10", os_build=19044)

    missing = missing_device_facts(device)

    assert missing == {"onboarding_status", "health_status", "av_mode"}


@pytest.mark.parametrize(
    ("platform", "build", "version", "build_missing"),
    [
        ("Windows10", None, None, True),
        ("Windows10", None, "22H2", False),
        ("Windows11", None, None, False),
        ("WindowsServer2019", None, None, False),
        ("WindowsServer", None, None, True),
    ],
)
def test_missing_device_facts_asks_for_build_only_when_it_decides(
    platform: str, build: int | None, version: str | None, build_missing: bool
) -> None:
    device = make_device(os_platform=platform, os_build=build, os_version=version)

    missing = missing_device_facts(device)

    assert ("os_build" in missing) is build_missing


def test_missing_device_facts_asks_again_for_an_unrecognised_alert_platform() -> None:
    from_alert = make_device(os_platform="Windows", source="alert")
    from_api = make_device(os_platform="Windows")

    assert "os_platform" in missing_device_facts(from_alert)
    assert "os_platform" not in missing_device_facts(from_api)


def test_missing_device_facts_asks_for_tags_only_when_tags_are_excluded() -> None:
    device = make_device(source="alert")
    excluding = replace(ENFORCE, excluded_device_tags=frozenset({"vip"}))

    assert "machine_tags" in missing_device_facts(device, settings=excluding)
    assert "machine_tags" not in missing_device_facts(device, settings=ENFORCE)
    assert "machine_tags" not in missing_device_facts(device)
    assert "machine_tags" not in missing_device_facts(make_device(), settings=excluding)


@pytest.mark.parametrize(
    ("file", "needed"),
    [
        (None, True),
        (FileFacts(sha1=SHA1, signer="Microsoft Corporation"), True),
        (FileFacts(sha1=SHA1, signer="Contoso", is_valid_certificate=True), False),
        (FileFacts(sha1=SHA1, source=FACTS_FROM_API), False),
    ],
)
def test_needs_file_facts_until_the_certificate_check_is_known(
    file: FileFacts | None, needed: bool
) -> None:
    assert needs_file_facts(file) is needed


# --- Guard -----------------------------------------------------------------


def test_guard_submits_when_enforcing_under_the_cap() -> None:
    verdict = guard_target(make_target(), ENFORCE, devices_for_file_this_hour=49)

    assert verdict.kind is VerdictKind.SUBMIT
    assert verdict.reason is Reason.ELIGIBLE
    assert verdict.facts["devices_for_file_this_hour"] == 49
    assert verdict.facts["max_devices_per_file_per_hour"] == 50


def test_guard_holds_target_when_the_device_cap_is_reached() -> None:
    verdict = guard_target(make_target(), ENFORCE, devices_for_file_this_hour=50)

    assert verdict.kind is VerdictKind.SKIP
    assert verdict.reason is Reason.DEVICE_CAP_REACHED
    assert verdict.facts["devices_for_file_this_hour"] == 50
    assert verdict.facts["max_devices_per_file_per_hour"] == 50


def test_guard_kill_switch_wins_over_everything() -> None:
    settings = replace(ENFORCE, kill_switch=True)

    verdict = guard_target(make_target(), settings, devices_for_file_this_hour=999)

    assert verdict.kind is VerdictKind.SKIP
    assert verdict.reason is Reason.KILL_SWITCH


def test_guard_skips_everything_in_dry_run() -> None:
    verdict = guard_target(make_target(), Settings(), devices_for_file_this_hour=0)

    assert verdict.kind is VerdictKind.SKIP
    assert verdict.reason is Reason.DRY_RUN
    assert verdict.facts["quarantine_mode"] == "dry-run"


def test_guard_reports_the_cap_before_dry_run() -> None:
    settings = Settings(max_devices_per_file_per_hour=1)

    verdict = guard_target(make_target(), settings, devices_for_file_this_hour=1)

    assert verdict.reason is Reason.DEVICE_CAP_REACHED


def test_guard_refuses_a_negative_count() -> None:
    with pytest.raises(ValueError, match="negative"):
        guard_target(make_target(), ENFORCE, devices_for_file_this_hour=-1)


# --- Judge -----------------------------------------------------------------


def judge(
    target: Target | None = None,
    *,
    device: DeviceFacts | None = None,
    file: FileFacts | None = None,
    settings: Settings = ENFORCE,
    count: int = 0,
) -> Verdict:
    return judge_target(
        make_target() if target is None else target,
        device=device,
        file=file,
        settings=settings,
        devices_for_file_this_hour=count,
    )


def test_judge_submits_an_eligible_target_with_every_fact() -> None:
    file = make_file(signer="Fabrikam Inc", issuer="Some CA", is_valid_certificate=True)

    verdict = judge(device=make_device(), file=file, count=3)

    assert verdict.kind is VerdictKind.SUBMIT
    assert verdict.reason is Reason.ELIGIBLE
    assert verdict.facts["os_platform"] == "Windows10"
    assert verdict.facts["av_mode"] == "0"
    assert verdict.facts["signer"] == "Fabrikam Inc"
    assert verdict.facts["alert_severity"] == "high"
    assert verdict.facts["devices_for_file_this_hour"] == 3


def test_judge_in_default_settings_records_dry_run() -> None:
    verdict = judge(device=make_device(), file=make_file(), settings=Settings())

    assert verdict.reason is Reason.DRY_RUN


def test_judge_screen_verdict_comes_before_missing_facts() -> None:
    verdict = judge(make_target(status="Resolved"), device=None, file=None)

    assert verdict.reason is Reason.ALERT_RESOLVED


def test_judge_qualify_verdict_comes_before_guardrails() -> None:
    settings = replace(ENFORCE, kill_switch=True)

    verdict = judge(
        device=make_device(av_mode="2"), file=make_file(), settings=settings
    )

    assert verdict.reason is Reason.AV_DISABLED


def test_judge_guard_applies_once_the_policy_passes() -> None:
    settings = replace(ENFORCE, kill_switch=True)

    verdict = judge(device=make_device(), file=make_file(), settings=settings)

    assert verdict.reason is Reason.KILL_SWITCH
    assert verdict.facts["os_platform"] == "Windows10"


def test_judge_keeps_the_rule_facts_over_the_context() -> None:
    settings = replace(ENFORCE, min_alert_severity="high")

    verdict = judge(make_target(severity="Medium"), settings=settings)

    assert verdict.reason is Reason.BELOW_MIN_SEVERITY
    assert verdict.facts["min_alert_severity"] == "high"
    assert verdict.facts["alert_severity"] == "medium"


def test_describe_target_holds_only_flat_scalars() -> None:
    facts = describe_target(make_target(), make_device(), make_file())

    assert all(isinstance(value, str | int | bool | None) for value in facts.values())
    assert "machine_tags" not in facts
