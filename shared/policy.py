"""The policy: which targets may be quarantined, and why each verdict was given.

The policy is pure. It reads the target, the facts it is given and the settings;
it never calls the API, reads a clock or writes a log, so every verdict can be
replayed from its inputs. It judges in three stages, cheapest first:

1. ``screen_target``: the alert and the operator's exclusions, no facts needed.
2. ``qualify_target``: the documented prerequisites of StopAndQuarantineFile
   (Windows 10 1703+ or Windows 11, not Microsoft- or trusted-signed, antivirus
   at least passive), plus onboarding, health and device-tag exclusions.
3. ``guard_target``: kill switch, the per-file device cap, dry-run.

``judge_target`` runs the three and returns the first verdict given. A stage
returns None when the target passes it. Deferrals (no budget now, API
throttling) and duplicates are decided by the budget and the ledger; their
reasons are listed in ``Reason`` so that every verdict speaks one vocabulary.

Facts from an alert are often partial. Facts are taken as Defender's own record
only when their ``source`` is ``FACTS_FROM_API``; the API client must set it.

The module is longer than most on purpose: it is the whole of the rules that
decide what gets quarantined, and a reviewer asking "why was this target
skipped?" should find every answer in one file.
"""

from __future__ import annotations

__all__ = [
    "FACTS_FROM_API",
    "FactValue",
    "Reason",
    "Verdict",
    "VerdictKind",
    "describe_target",
    "guard_target",
    "judge_target",
    "missing_device_facts",
    "needs_device_facts",
    "needs_file_facts",
    "qualify_target",
    "screen_target",
]

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType

from shared.settings import Settings, UnknownAvMode
from shared.targets import DeviceFacts, FileFacts, Target, is_sha1

FactValue = str | int | bool | None

FACTS_FROM_API = "api"


class VerdictKind(StrEnum):
    """What happens to a target."""

    SUBMIT = "submit"
    SKIP = "skip"
    DEFER = "defer"


class Reason(StrEnum):
    """Why a verdict was given; stable values that queries and alerts rely on."""

    ELIGIBLE = "eligible"

    INVALID_DEVICE_ID = "invalid_device_id"
    INVALID_SHA1 = "invalid_sha1"
    ALERT_RESOLVED = "alert_resolved"
    SEVERITY_UNKNOWN = "severity_unknown"
    BELOW_MIN_SEVERITY = "below_min_severity"
    DETECTION_SOURCE_NOT_ALLOWED = "detection_source_not_allowed"
    EVIDENCE_ROLE_NOT_ALLOWED = "evidence_role_not_allowed"
    EXCLUDED_DEVICE = "excluded_device"
    EXCLUDED_SHA1 = "excluded_sha1"
    EXCLUDED_PATH = "excluded_path"
    PATH_UNKNOWN = "path_unknown"

    DEVICE_FACTS_UNKNOWN = "device_facts_unknown"
    DEVICE_TAGS_UNKNOWN = "device_tags_unknown"
    EXCLUDED_DEVICE_TAG = "excluded_device_tag"
    OS_PLATFORM_UNKNOWN = "os_platform_unknown"
    OS_PLATFORM_NOT_SUPPORTED = "os_platform_not_supported"
    WINDOWS_SERVER_NOT_ALLOWED = "windows_server_not_allowed"
    OS_BUILD_UNKNOWN = "os_build_unknown"
    OS_BUILD_TOO_OLD = "os_build_too_old"
    DEVICE_NOT_ONBOARDED = "device_not_onboarded"
    DEVICE_INACTIVE = "device_inactive"
    AV_DISABLED = "av_disabled"
    AV_MODE_UNKNOWN = "av_mode_unknown"
    FILE_FACTS_UNKNOWN = "file_facts_unknown"
    MICROSOFT_SIGNED = "microsoft_signed"
    TRUSTED_PUBLISHER = "trusted_publisher"
    CERTIFICATE_UNVERIFIED = "certificate_unverified"

    KILL_SWITCH = "kill_switch"
    DEVICE_CAP_REACHED = "device_cap_reached"
    DRY_RUN = "dry_run"

    # Given by the ledger and the budget, not by this module.
    DUPLICATE = "duplicate"
    BUDGET_EXHAUSTED = "budget_exhausted"
    THROTTLED = "throttled"
    API_UNAVAILABLE = "api_unavailable"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the policy says about one target, and the facts its rule used.

    ``facts`` holds flat scalars only, so a log record can carry them as
    attributes. A ``defer`` verdict always has a timezone-aware ``retry_at``;
    no other kind has one.
    """

    kind: VerdictKind
    reason: Reason
    facts: Mapping[str, FactValue]
    detail: str
    retry_at: datetime | None = None

    def __post_init__(self) -> None:
        if (self.kind is VerdictKind.DEFER) != (self.retry_at is not None):
            raise ValueError("a defer verdict, and only a defer verdict, has retry_at")
        if self.retry_at is not None and self.retry_at.utcoffset() is None:
            raise ValueError("retry_at must be timezone-aware")

        # A read-only copy: a verdict is a record, and its caller's dict may change.
        object.__setattr__(self, "facts", MappingProxyType(dict(self.facts)))

    def log_fields(self) -> dict[str, FactValue]:
        """The verdict as flat log attributes: verdict, reason, retry time, facts."""
        fields: dict[str, FactValue] = dict(self.facts)
        fields["verdict"] = str(self.kind)
        fields["reason"] = str(self.reason)
        if self.retry_at is not None:
            fields["retry_at"] = self.retry_at.isoformat()
        return fields


def _skip(reason: Reason, detail: str, **facts: FactValue) -> Verdict:
    return Verdict(VerdictKind.SKIP, reason, facts, detail)


def _fold(value: str | None) -> str | None:
    """Lower-case and trim; blank means unknown."""
    if value is None:
        return None
    folded = " ".join(value.split()).lower()
    return folded or None


# --- Stage 1: screen -------------------------------------------------------

_SEVERITY_RANK = {"informational": 0, "low": 1, "medium": 2, "high": 3}


def screen_target(target: Target, settings: Settings) -> Verdict | None:
    """Judge what needs no facts: identifiers, the alert, operator exclusions.

    An alert whose severity is missing or not one of the four known levels
    (Defender's ``UnSpecified``, Graph's ``unknown``) is skipped as
    ``severity_unknown`` whatever the minimum: the playbook acts only on
    alerts it can rank.
    """
    identifiers = _screen_identifiers(target)
    if identifiers is not None:
        return identifiers

    alert = target.alert
    if _fold(alert.status) == "resolved":
        return _skip(
            Reason.ALERT_RESOLVED,
            "the alert is resolved",
            alert_status=alert.status,
        )

    severity = _screen_severity(target, settings)
    if severity is not None:
        return severity

    source = _fold(alert.detection_source)
    if settings.allowed_detection_sources and (
        source not in settings.allowed_detection_sources
    ):
        return _skip(
            Reason.DETECTION_SOURCE_NOT_ALLOWED,
            "the alert's detection source is not in ALLOWED_DETECTION_SOURCES",
            detection_source=alert.detection_source,
        )

    role = _fold(target.evidence_role)
    if settings.allowed_evidence_roles and role not in settings.allowed_evidence_roles:
        return _skip(
            Reason.EVIDENCE_ROLE_NOT_ALLOWED,
            "the evidence role is not in ALLOWED_EVIDENCE_ROLES",
            evidence_role=target.evidence_role,
        )

    return _screen_exclusions(target, settings)


def _screen_identifiers(target: Target) -> Verdict | None:
    # Extraction already rejects bad identifiers; a target built elsewhere (a
    # replay, a queue message) must not reach the API with one either.
    if not is_sha1(target.device_id):
        return _skip(
            Reason.INVALID_DEVICE_ID,
            "the device id is not 40 hexadecimal characters",
        )
    if not is_sha1(target.sha1):
        return _skip(
            Reason.INVALID_SHA1,
            "the file SHA-1 is not 40 hexadecimal characters",
        )
    return None


def _screen_severity(target: Target, settings: Settings) -> Verdict | None:
    severity = _fold(target.alert.severity)
    rank = _SEVERITY_RANK.get(severity or "")
    if rank is None:
        return _skip(
            Reason.SEVERITY_UNKNOWN,
            "the alert's severity is missing or not a known level",
            alert_severity=target.alert.severity,
        )

    minimum = settings.min_alert_severity
    if rank < _SEVERITY_RANK[minimum]:
        return _skip(
            Reason.BELOW_MIN_SEVERITY,
            "the alert's severity is below MIN_ALERT_SEVERITY",
            alert_severity=severity,
            min_alert_severity=minimum,
        )
    return None


def _screen_exclusions(target: Target, settings: Settings) -> Verdict | None:
    if target.device_id.lower() in settings.excluded_device_ids:
        return _skip(Reason.EXCLUDED_DEVICE, "the device is in EXCLUDED_DEVICE_IDS")

    if target.sha1.lower() in settings.excluded_sha1s:
        return _skip(Reason.EXCLUDED_SHA1, "the file is in EXCLUDED_SHA1S")

    if not settings.excluded_path_patterns:
        return None
    if not (target.folder_path or "").strip():
        # The operator named paths never to touch; without a path this target
        # cannot be shown to lie outside them.
        return _skip(
            Reason.PATH_UNKNOWN,
            "EXCLUDED_PATH_PATTERNS is set and the evidence has no folder path",
        )
    pattern = _matching_path_pattern(
        target.folder_path or "", target.file_name, settings.excluded_path_patterns
    )
    if pattern is not None:
        return _skip(
            Reason.EXCLUDED_PATH,
            "the file's path matches EXCLUDED_PATH_PATTERNS",
            folder_path=target.folder_path,
            path_pattern=pattern,
        )
    return None


def _normalise_path(path: str) -> str:
    """One spelling of a Windows path: backslashes, single separators, lower case."""
    unified = re.sub(r"[\\/]+", r"\\", path.strip())
    return unified.rstrip("\\").lower()


@lru_cache(maxsize=256)
def _compile_path_pattern(pattern: str) -> re.Pattern[str]:
    # Only * (any run of characters, separators included, so "c:\tools\*"
    # covers the whole tree) and ? (one character) are special; brackets and
    # everything else match themselves, unlike fnmatch.
    parts = []
    for char in _normalise_path(pattern):
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def _matching_path_pattern(
    folder_path: str, file_name: str | None, patterns: tuple[str, ...]
) -> str | None:
    """The first pattern that matches the folder or the folder plus file name."""
    folder = _normalise_path(folder_path)
    candidates = [folder]
    if file_name and file_name.strip():
        candidates.append(folder + "\\" + file_name.strip().lower())

    for pattern in patterns:
        compiled = _compile_path_pattern(pattern)
        if any(compiled.fullmatch(candidate) for candidate in candidates):
            return pattern
    return None


# --- Stage 2: qualify ------------------------------------------------------


class _Platform(StrEnum):
    WINDOWS_10 = "windows_10"
    WINDOWS_11 = "windows_11"
    WINDOWS_SERVER = "windows_server"
    NOT_SUPPORTED = "not_supported"
    UNRECOGNISED = "unrecognised"
    UNKNOWN = "unknown"


# Platforms Defender names that the action never supports. Anything else that
# is not Windows 10, 11 or Server is unrecognised, and never supported either.
_NOT_SUPPORTED_PLATFORMS = frozenset(
    {
        "linux",
        "macos",
        "mac",
        "ios",
        "android",
        "windows7",
        "windows8",
        "windows8.1",
        "windows81",
        "windowsxp",
        "windowsvista",
    }
)

# Windows 10 version 1703 is build 15063: the API page's lowest client.
_MIN_WINDOWS_10_BUILD = 15063
_MIN_WINDOWS_10_RELEASE = 1703
# Windows Server 2012 R2 (build 9600) is the lowest server the file-response
# page names; the API page itself names clients only.
_MIN_WINDOWS_SERVER_BUILD = 9600
_OLD_SERVER_RELEASES = frozenset({"2003", "2003r2", "2008", "2008r2", "2012"})

_AV_ELIGIBLE = {"0": "active", "1": "passive", "4": "edr_blocked"}
_AV_DISABLED = "2"


def _classify_platform(os_platform: str | None) -> tuple[_Platform, str]:
    """The platform family, and the rest of the name (a server's release)."""
    if os_platform is None or not os_platform.strip():
        return _Platform.UNKNOWN, ""

    # "Windows10", "Windows 10" and "windows_10" are one platform.
    name = re.sub(r"[\s_-]+", "", os_platform).lower()
    if name == "windows10":
        return _Platform.WINDOWS_10, ""
    if name == "windows11":
        return _Platform.WINDOWS_11, ""
    if name.startswith("windowsserver"):
        return _Platform.WINDOWS_SERVER, name.removeprefix("windowsserver")
    if name in _NOT_SUPPORTED_PLATFORMS:
        return _Platform.NOT_SUPPORTED, ""
    return _Platform.UNRECOGNISED, ""


def _windows_10_is_recent(device: DeviceFacts) -> bool | None:
    """Whether a Windows 10 device is version 1703 or later; None when unknown.

    The build decides when known. Otherwise the version string can prove it: a
    release id ("1709"), a half-year name ("21H2", all later than 1703), or a
    full version ("10.0.19044.1865").
    """
    if device.os_build is not None and device.os_build > 0:
        return device.os_build >= _MIN_WINDOWS_10_BUILD

    version = (device.os_version or "").strip().lower()
    if re.fullmatch(r"\d{4}", version):
        return int(version) >= _MIN_WINDOWS_10_RELEASE
    if re.fullmatch(r"\d{2}h[12]", version):
        return True
    full = re.fullmatch(r"10\.0\.(\d+)(\.\d+)?", version)
    if full:
        return int(full.group(1)) >= _MIN_WINDOWS_10_BUILD
    return None


def _windows_server_is_recent(device: DeviceFacts, release: str) -> bool | None:
    """Whether a Windows Server is 2012 R2 or later; None when unknown."""
    if device.os_build is not None and device.os_build > 0:
        return device.os_build >= _MIN_WINDOWS_SERVER_BUILD
    if release in _OLD_SERVER_RELEASES:
        return False
    # Later long-term releases (2016, 2019, 2022, 2025...) and the semi-annual
    # ones (1709 to 20H2) all came after 2012 R2.
    if re.fullmatch(r"\d{4}(r2)?|\d{2}h[12]", release):
        return True
    return None


def _tags_are_known(device: DeviceFacts) -> bool:
    # No alert format carries machine tags; only the machine record does.
    return device.source == FACTS_FROM_API


def missing_device_facts(
    device: DeviceFacts | None, *, settings: Settings | None = None
) -> frozenset[str]:
    """The device facts the policy needs and does not have.

    Names are ``DeviceFacts`` fields: ``os_platform``, ``os_build``,
    ``onboarding_status``, ``health_status`` (all from the machine record),
    ``av_mode`` (from the antivirus report), and ``machine_tags`` when
    ``settings`` excludes device tags and the facts did not come from the API.
    A platform spelling this policy does not recognise counts as missing until
    the API has given its own. A field the API's record leaves empty stays
    missing: look the device up once, then qualify with what is known.
    """
    if device is None:
        return frozenset(
            {"os_platform", "os_build", "onboarding_status", "health_status", "av_mode"}
        )

    missing: set[str] = set()
    platform, release = _classify_platform(device.os_platform)
    from_api = device.source == FACTS_FROM_API
    if platform is _Platform.UNKNOWN or (
        platform is _Platform.UNRECOGNISED and not from_api
    ):
        missing.add("os_platform")
    if platform is _Platform.WINDOWS_10 and _windows_10_is_recent(device) is None:
        missing.add("os_build")
    if (
        platform is _Platform.WINDOWS_SERVER
        and _windows_server_is_recent(device, release) is None
    ):
        missing.add("os_build")
    if device.onboarding_status is None:
        missing.add("onboarding_status")
    if device.health_status is None:
        missing.add("health_status")
    if device.av_mode is None:
        missing.add("av_mode")
    tags_matter = settings is not None and bool(settings.excluded_device_tags)
    if tags_matter and not _tags_are_known(device):
        missing.add("machine_tags")
    return frozenset(missing)


def needs_device_facts(
    device: DeviceFacts | None, *, settings: Settings | None = None
) -> bool:
    """Whether the device facts at hand are too thin to qualify a target."""
    return bool(missing_device_facts(device, settings=settings))


def needs_file_facts(file: FileFacts | None) -> bool:
    """Whether the file's signature must be looked up before qualifying.

    Only Defender's file record says whether a certificate was verified; an
    alert's signer names without that are not enough.
    """
    if file is None:
        return True
    return file.source != FACTS_FROM_API and file.is_valid_certificate is None


def describe_target(
    target: Target,
    device: DeviceFacts | None = None,
    file: FileFacts | None = None,
) -> dict[str, FactValue]:
    """The facts every verdict on this target may carry, as flat scalars."""
    facts: dict[str, FactValue] = {
        "alert_severity": _fold(target.alert.severity),
        "detection_source": target.alert.detection_source,
        "evidence_role": target.evidence_role,
    }
    if device is not None:
        facts.update(_device_facts(device))
    if file is not None:
        facts.update(_file_facts(file))
    return facts


def _device_facts(device: DeviceFacts) -> dict[str, FactValue]:
    return {
        "os_platform": device.os_platform,
        "os_build": device.os_build,
        "os_version": device.os_version,
        "onboarding_status": device.onboarding_status,
        "health_status": device.health_status,
        "av_mode": device.av_mode,
        "av_status": device.av_status,
        "device_facts_source": device.source,
    }


def _file_facts(file: FileFacts) -> dict[str, FactValue]:
    return {
        "signer": file.signer,
        "issuer": file.issuer,
        "file_publisher": file.file_publisher,
        "is_valid_certificate": file.is_valid_certificate,
        "file_facts_source": file.source,
    }


def qualify_target(
    target: Target,
    device: DeviceFacts | None,
    file: FileFacts | None,
    settings: Settings,
) -> Verdict | None:
    """Judge the documented prerequisites against the device and file facts.

    ``device`` and ``file`` are the best facts the caller could gather (from
    the alert, the cache or the API); None means none could be had, and the
    target is skipped rather than submitted blind.
    """
    if device is None:
        return _skip(
            Reason.DEVICE_FACTS_UNKNOWN,
            "no facts about the device could be found",
        )

    device_verdict = _qualify_device(device, settings)
    if device_verdict is not None:
        return device_verdict

    if file is None:
        return _skip(
            Reason.FILE_FACTS_UNKNOWN,
            "no facts about the file's signature could be found",
        )
    return _qualify_file(file, settings)


def _qualify_device(device: DeviceFacts, settings: Settings) -> Verdict | None:
    facts = _device_facts(device)

    if settings.excluded_device_tags:
        if not _tags_are_known(device):
            return _skip(
                Reason.DEVICE_TAGS_UNKNOWN,
                "EXCLUDED_DEVICE_TAGS is set and the device's tags are not known",
                **facts,
            )
        excluded = sorted(
            {tag.strip().lower() for tag in device.machine_tags}
            & settings.excluded_device_tags
        )
        if excluded:
            return _skip(
                Reason.EXCLUDED_DEVICE_TAG,
                "the device carries a tag in EXCLUDED_DEVICE_TAGS",
                device_tag=excluded[0],
                **facts,
            )

    platform_verdict = _qualify_platform(device, settings, facts)
    if platform_verdict is not None:
        return platform_verdict

    onboarding = _fold(device.onboarding_status)
    if onboarding is not None and onboarding != "onboarded":
        return _skip(
            Reason.DEVICE_NOT_ONBOARDED,
            "the device is not onboarded to Defender for Endpoint",
            **facts,
        )

    if (
        _fold(device.health_status) == "inactive"
        and not settings.allow_inactive_devices
    ):
        return _skip(
            Reason.DEVICE_INACTIVE,
            "the device is inactive and ALLOW_INACTIVE_DEVICES is false",
            **facts,
        )

    return _qualify_antivirus(device, settings, facts)


def _qualify_platform(
    device: DeviceFacts, settings: Settings, facts: dict[str, FactValue]
) -> Verdict | None:
    platform, release = _classify_platform(device.os_platform)

    if platform is _Platform.UNKNOWN:
        return _skip(
            Reason.OS_PLATFORM_UNKNOWN, "the device's OS platform is not known", **facts
        )
    if platform in (_Platform.NOT_SUPPORTED, _Platform.UNRECOGNISED):
        return _skip(
            Reason.OS_PLATFORM_NOT_SUPPORTED,
            "the action runs on Windows 10 1703+, Windows 11 or Windows Server only",
            **facts,
        )
    if platform is _Platform.WINDOWS_SERVER and not settings.allow_windows_server:
        return _skip(
            Reason.WINDOWS_SERVER_NOT_ALLOWED,
            "the device runs Windows Server and ALLOW_WINDOWS_SERVER is false",
            **facts,
        )

    return _qualify_release(device, platform, release, facts)


def _qualify_release(
    device: DeviceFacts,
    platform: _Platform,
    release: str,
    facts: dict[str, FactValue],
) -> Verdict | None:
    if platform is _Platform.WINDOWS_11:
        return None
    if platform is _Platform.WINDOWS_SERVER:
        recent = _windows_server_is_recent(device, release)
        minimum = "Windows Server 2012 R2"
    else:
        recent = _windows_10_is_recent(device)
        minimum = "Windows 10 version 1703"

    if recent is None:
        return _skip(
            Reason.OS_BUILD_UNKNOWN,
            f"neither build nor version shows {minimum} or later",
            **facts,
        )
    if not recent:
        return _skip(
            Reason.OS_BUILD_TOO_OLD, f"the device is older than {minimum}", **facts
        )
    return None


def _qualify_antivirus(
    device: DeviceFacts, settings: Settings, facts: dict[str, FactValue]
) -> Verdict | None:
    # The API page asks for Defender Antivirus running at least in passive
    # mode. "4" (EDR in block mode) runs on a passive antivirus. "5" (passive
    # audit), "3" and "" (other) are not documented as qualifying. Without a
    # mode, an alert's own word that the antivirus is disabled still counts.
    av_mode = device.av_mode
    if av_mode in _AV_ELIGIBLE:
        return None
    if av_mode == _AV_DISABLED or _fold(device.av_status) == "disabled":
        return _skip(
            Reason.AV_DISABLED, "Defender Antivirus is disabled on the device", **facts
        )
    if settings.unknown_av_mode is UnknownAvMode.SUBMIT:
        return None
    return _skip(
        Reason.AV_MODE_UNKNOWN,
        "the antivirus mode does not show Defender Antivirus running, "
        "and UNKNOWN_AV_MODE is skip",
        **facts,
    )


# "Microsoft" as a whole word at the start: "Microsoft Corporation",
# "Microsoft Windows", "Microsoft Code Signing PCA 2011", but not "Microsofty".
_MICROSOFT_NAME = re.compile(r"microsoft(?![a-z0-9])")


def _is_microsoft_name(name: str | None) -> bool:
    folded = _fold(name)
    return folded is not None and _MICROSOFT_NAME.match(folded) is not None


def _trusted_name(names: tuple[str | None, ...], trusted: frozenset[str]) -> str | None:
    """The first of ``names`` on the trusted list, compared case-insensitively."""
    folded_trusted = {_fold(entry) for entry in trusted}
    for name in names:
        folded = _fold(name)
        if folded is not None and folded in folded_trusted:
            return folded
    return None


def _qualify_file(file: FileFacts, settings: Settings) -> Verdict | None:
    """Keep Microsoft-signed and trusted-publisher files out of reach.

    With a verified certificate, the file is Microsoft's when its signer,
    issuer or publisher names Microsoft (Defender often leaves ``signer``
    empty on Windows binaries and fills the publisher), and trusted when its
    signer or publisher is in TRUSTED_PUBLISHERS. A certificate that failed
    verification counts as no signature. With no verification result, a
    record from the API that names no signer or issuer is an unsigned file (it
    is how Defender reports one); one that names Microsoft or a trusted signer
    is skipped as unverified; and facts from an alert alone prove nothing.
    """
    facts = _file_facts(file)
    valid = file.is_valid_certificate

    if valid is None and file.source != FACTS_FROM_API:
        return _skip(
            Reason.FILE_FACTS_UNKNOWN,
            "the file's certificate has not been checked against Defender's record",
            **facts,
        )

    if valid is True:
        if any(
            _is_microsoft_name(name)
            for name in (file.signer, file.issuer, file.file_publisher)
        ):
            return _skip(
                Reason.MICROSOFT_SIGNED, "the file is signed by Microsoft", **facts
            )
        trusted = _trusted_name(
            (file.signer, file.file_publisher), settings.trusted_publishers
        )
        if trusted is not None:
            return _skip(
                Reason.TRUSTED_PUBLISHER,
                "the file is signed by a publisher in TRUSTED_PUBLISHERS",
                trusted_publisher=trusted,
                **facts,
            )

    if valid is None:
        # The publisher alone is the file's own claim, not a signature.
        signed_names = (file.signer, file.issuer)
        if any(_is_microsoft_name(name) for name in signed_names) or (
            _trusted_name(signed_names, settings.trusted_publishers) is not None
        ):
            return _skip(
                Reason.CERTIFICATE_UNVERIFIED,
                "the file names Microsoft or a trusted signer, "
                "and Defender has not verified its certificate",
                **facts,
            )
    return None


# --- Stage 3: guard --------------------------------------------------------


def guard_target(
    target: Target, settings: Settings, *, devices_for_file_this_hour: int
) -> Verdict:
    """Apply the guardrails to a target that passed the policy.

    Args:
        target: the target; the guardrails do not depend on it today, and it
            is taken so that the call reads like the other stages.
        settings: kill switch, device cap and quarantine mode.
        devices_for_file_this_hour: distinct devices this SHA-1 was already
            submitted for in the last hour, as the ledger counts them.

    Raises:
        ValueError: the count is negative.
    """
    if devices_for_file_this_hour < 0:
        raise ValueError("devices_for_file_this_hour cannot be negative")
    mode = str(settings.quarantine_mode)

    if settings.kill_switch:
        return _skip(
            Reason.KILL_SWITCH,
            "QUARANTINE_KILL_SWITCH stops every submission",
            quarantine_mode=mode,
        )

    cap = settings.max_devices_per_file_per_hour
    if devices_for_file_this_hour >= cap:
        return _skip(
            Reason.DEVICE_CAP_REACHED,
            "this file was already submitted for MAX_DEVICES_PER_FILE_PER_HOUR "
            "devices in the last hour; held",
            devices_for_file_this_hour=devices_for_file_this_hour,
            max_devices_per_file_per_hour=cap,
            quarantine_mode=mode,
        )

    counts: dict[str, FactValue] = {
        "devices_for_file_this_hour": devices_for_file_this_hour,
        "max_devices_per_file_per_hour": cap,
        "quarantine_mode": mode,
    }
    if settings.dry_run:
        return _skip(
            Reason.DRY_RUN,
            "every rule passed; QUARANTINE_MODE is dry-run, so nothing is submitted",
            **counts,
        )
    return Verdict(VerdictKind.SUBMIT, Reason.ELIGIBLE, counts, "every rule passed")


# --- All stages ------------------------------------------------------------


def judge_target(
    target: Target,
    *,
    device: DeviceFacts | None,
    file: FileFacts | None,
    settings: Settings,
    devices_for_file_this_hour: int,
) -> Verdict:
    """Screen, qualify and guard a target; the first verdict given stands.

    The verdict carries the facts of its own rule and, beside them, what was
    known of the alert, the device and the file when it was given.
    """
    verdict = screen_target(target, settings)

    if verdict is None:
        verdict = qualify_target(target, device, file, settings)

    if verdict is None:
        verdict = guard_target(
            target, settings, devices_for_file_this_hour=devices_for_file_this_hour
        )

    context = describe_target(target, device, file)
    return replace(verdict, facts={**context, **verdict.facts})
