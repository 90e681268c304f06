"""The built-in demo tenant: one device or file for every rule the API applies.

Ids are derived from fixed labels, so they are the same in every run and every
process; tests and the demo refer to them by the constants below. The tenant covers
Windows 10 on both sides of build 15063, Windows 11, Windows Server 2019, macOS and
Linux; every ``avMode``; an active and an inactive device; files signed by Microsoft,
by an ordinary and by a trusted third party, unsigned, and with a certificate that
failed verification; and alerts whose evidence names them.
"""

from __future__ import annotations

__all__ = [
    "ALERT_INACTIVE_DEVICE",
    "ALERT_INVALID_CERTIFICATE",
    "ALERT_MACOS",
    "ALERT_SERVER",
    "ALERT_THIRD_PARTY",
    "ALERT_UNSIGNED",
    "DEMO_TENANT_ID",
    "DEVICE_INACTIVE",
    "DEVICE_LINUX",
    "DEVICE_MACOS",
    "DEVICE_SERVER_2019",
    "DEVICE_WIN10",
    "DEVICE_WIN10_1607",
    "DEVICE_WIN10_1703",
    "DEVICE_WIN10_AV_DISABLED",
    "DEVICE_WIN10_AV_EDR_BLOCKED",
    "DEVICE_WIN10_AV_OTHER",
    "DEVICE_WIN10_AV_PASSIVE",
    "DEVICE_WIN10_AV_PASSIVE_AUDIT",
    "DEVICE_WIN10_AV_UNREPORTED",
    "DEVICE_WIN11",
    "FILE_INVALID_CERTIFICATE",
    "FILE_MICROSOFT_SIGNED",
    "FILE_NEVER_SEEN",
    "FILE_SEEN_ON_WIN11_ONLY",
    "FILE_THIRD_PARTY",
    "FILE_TRUSTED_PUBLISHER",
    "FILE_UNSIGNED",
    "TRUSTED_PUBLISHER",
    "UNKNOWN_SHA1",
    "demo_tenant",
]

import functools
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

from simulator.clock import DEMO_EPOCH
from simulator.tenant import Alert, Device, Evidence, FileRecord, Observation, Tenant


def _sha1(label: str) -> str:
    return hashlib.sha1(
        f"defender-quarantine demo {label}".encode(), usedforsecurity=False
    ).hexdigest()


def _sha256(label: str) -> str:
    return hashlib.sha256(f"defender-quarantine demo {label}".encode()).hexdigest()


def _alert_id(label: str) -> str:
    # Defender for Endpoint alert ids look like "da637472900382838869_1364969609".
    digits = str(int(_sha1(f"alert {label}"), 16))
    return f"da{digits[:18]}_{digits[18:28]}"


DEMO_TENANT_ID = str(uuid.uuid5(uuid.NAMESPACE_DNS, "contoso.test"))

DEVICE_WIN10_1607 = _sha1("device win10-1607")
DEVICE_WIN10_1703 = _sha1("device win10-1703")
DEVICE_WIN10 = _sha1("device win10-22h2")
DEVICE_WIN10_AV_PASSIVE = _sha1("device win10-av-passive")
DEVICE_WIN10_AV_DISABLED = _sha1("device win10-av-disabled")
DEVICE_WIN10_AV_OTHER = _sha1("device win10-av-other")
DEVICE_WIN10_AV_EDR_BLOCKED = _sha1("device win10-av-edr-blocked")
DEVICE_WIN10_AV_PASSIVE_AUDIT = _sha1("device win10-av-passive-audit")
DEVICE_WIN10_AV_UNREPORTED = _sha1("device win10-av-unreported")
DEVICE_WIN11 = _sha1("device win11-23h2")
DEVICE_SERVER_2019 = _sha1("device server-2019")
DEVICE_MACOS = _sha1("device macos")
DEVICE_LINUX = _sha1("device linux")
DEVICE_INACTIVE = _sha1("device win10-inactive")

FILE_MICROSOFT_SIGNED = _sha1("file rundll32")
FILE_THIRD_PARTY = _sha1("file invoice-viewer")
FILE_TRUSTED_PUBLISHER = _sha1("file fabrikam-agent")
FILE_UNSIGNED = _sha1("file payload")
FILE_INVALID_CERTIFICATE = _sha1("file fake-update")
FILE_SEEN_ON_WIN11_ONLY = _sha1("file dropper-script")
FILE_NEVER_SEEN = _sha1("file archive-tool")

# A well-formed SHA-1 that no device and no file catalogue entry knows.
UNKNOWN_SHA1 = _sha1("file nowhere")

TRUSTED_PUBLISHER = "Fabrikam Software Ltd"

ALERT_THIRD_PARTY = _alert_id("third-party on win10")
ALERT_UNSIGNED = _alert_id("unsigned on win11")
ALERT_SERVER = _alert_id("third-party on server")
ALERT_MACOS = _alert_id("unsigned on macos")
ALERT_INVALID_CERTIFICATE = _alert_id("invalid certificate on passive win10")
ALERT_INACTIVE_DEVICE = _alert_id("unsigned on inactive win10")

_NOW = datetime.fromtimestamp(DEMO_EPOCH, tz=UTC)


@functools.cache
def demo_tenant() -> Tenant:
    """The demo tenant (built once; it is immutable)."""
    devices = _devices()
    files = _files()

    return Tenant(
        name="Contoso demo",
        tenant_id=DEMO_TENANT_ID,
        trusted_publishers=(TRUSTED_PUBLISHER,),
        devices=devices,
        files=files,
        observations=_observations(devices, files),
        alerts=_alerts(),
    )


def _windows(
    machine_id: str,
    name: str,
    *,
    platform: str = "Windows10",
    build: int = 19045,
    version: str = "22H2",
    av_mode: str = "0",
    health: str = "Active",
    last_seen: timedelta = timedelta(hours=2),
) -> Device:
    return Device(
        id=machine_id,
        computer_dns_name=f"{name}.contoso.test",
        os_platform=platform,
        os_build=build,
        version=version,
        health_status=health,
        av_mode=av_mode,
        defender_av_status="Disabled" if av_mode == "2" else "Updated",
        machine_tags=("demo",),
        first_seen=_NOW - timedelta(days=200),
        last_seen=_NOW - last_seen,
        last_ip_address="10.0.0." + str(int(machine_id[:2], 16) % 250 + 2),
    )


def _devices() -> tuple[Device, ...]:
    return (
        _windows(DEVICE_WIN10_1607, "win10-1607", build=14393, version="1607"),
        _windows(DEVICE_WIN10_1703, "win10-1703", build=15063, version="1703"),
        _windows(DEVICE_WIN10, "win10-22h2"),
        _windows(DEVICE_WIN10_AV_PASSIVE, "win10-av-passive", av_mode="1"),
        _windows(DEVICE_WIN10_AV_DISABLED, "win10-av-disabled", av_mode="2"),
        _windows(DEVICE_WIN10_AV_OTHER, "win10-av-other", av_mode="3"),
        _windows(DEVICE_WIN10_AV_EDR_BLOCKED, "win10-av-edr-blocked", av_mode="4"),
        _windows(DEVICE_WIN10_AV_PASSIVE_AUDIT, "win10-av-passive-audit", av_mode="5"),
        _windows(DEVICE_WIN10_AV_UNREPORTED, "win10-av-unreported", av_mode=""),
        _windows(
            DEVICE_WIN11,
            "win11-23h2",
            platform="Windows11",
            build=22631,
            version="23H2",
        ),
        _windows(
            DEVICE_SERVER_2019,
            "server-2019",
            platform="WindowsServer2019",
            build=17763,
            version="1809",
        ),
        _windows(
            DEVICE_INACTIVE,
            "win10-inactive",
            health="Inactive",
            last_seen=timedelta(days=5),
        ),
        Device(
            id=DEVICE_MACOS,
            computer_dns_name="macbook-01.contoso.test",
            os_platform="macOS",
            version="14.5",
            machine_tags=("demo",),
            first_seen=_NOW - timedelta(days=90),
            last_seen=_NOW - timedelta(hours=1),
            os_architecture="ARM64",
        ),
        Device(
            id=DEVICE_LINUX,
            computer_dns_name="build-agent-01.contoso.test",
            os_platform="Linux",
            version="22.04",
            av_mode="1",
            machine_tags=("demo",),
            first_seen=_NOW - timedelta(days=60),
            last_seen=_NOW - timedelta(hours=3),
        ),
    )


def _files() -> tuple[FileRecord, ...]:
    return (
        FileRecord(
            sha1=FILE_MICROSOFT_SIGNED,
            sha256=_sha256("file rundll32"),
            file_name="rundll32.exe",
            size=71680,
            file_publisher="Microsoft Corporation",
            file_product_name="Microsoft Windows Operating System",
            signer="Microsoft Windows",
            issuer="Microsoft Windows Production PCA 2011",
            signer_hash=_sha1("certificate microsoft windows"),
            is_valid_certificate=True,
            global_prevalence=1_000_000,
        ),
        FileRecord(
            sha1=FILE_THIRD_PARTY,
            sha256=_sha256("file invoice-viewer"),
            file_name="invoice_viewer.exe",
            size=482_304,
            file_publisher="Northwind Traders Ltd",
            file_product_name="Invoice Viewer",
            signer="Northwind Traders Ltd",
            issuer="DigiCert Trusted G4 Code Signing RSA4096 SHA384 2021 CA1",
            signer_hash=_sha1("certificate northwind"),
            is_valid_certificate=True,
            global_prevalence=12,
            determination_type="Malware",
            determination_value="Trojan:Win32/Wacatac.B!ml",
        ),
        FileRecord(
            sha1=FILE_TRUSTED_PUBLISHER,
            sha256=_sha256("file fabrikam-agent"),
            file_name="fabrikam_agent.exe",
            size=1_204_224,
            file_publisher=TRUSTED_PUBLISHER,
            file_product_name="Fabrikam Endpoint Agent",
            signer=TRUSTED_PUBLISHER,
            issuer="DigiCert Trusted G4 Code Signing RSA4096 SHA384 2021 CA1",
            signer_hash=_sha1("certificate fabrikam"),
            is_valid_certificate=True,
            global_prevalence=5_400,
        ),
        FileRecord(
            sha1=FILE_UNSIGNED,
            sha256=_sha256("file payload"),
            file_name="payload.exe",
            size=73_802,
            global_prevalence=3,
            determination_type="Malware",
            determination_value="Backdoor:Win32/Bladabindi!ml",
        ),
        FileRecord(
            sha1=FILE_INVALID_CERTIFICATE,
            sha256=_sha256("file fake-update"),
            file_name="msupdate.exe",
            size=226_816,
            file_publisher="Microsoft Corporation",
            signer="Microsoft Corporation",
            issuer="Microsoft Code Signing PCA 2011",
            signer_hash=_sha1("certificate forged"),
            is_valid_certificate=False,
            global_prevalence=1,
        ),
        FileRecord(
            sha1=FILE_SEEN_ON_WIN11_ONLY,
            sha256=_sha256("file dropper-script"),
            file_name="dropper.ps1",
            size=4_211,
            file_type="PowerShell",
            is_pe_file=False,
            global_prevalence=1,
        ),
        FileRecord(
            sha1=FILE_NEVER_SEEN,
            sha256=_sha256("file archive-tool"),
            file_name="archive_tool.exe",
            size=655_360,
            global_prevalence=40,
        ),
    )


def _observations(
    devices: tuple[Device, ...], files: tuple[FileRecord, ...]
) -> tuple[Observation, ...]:
    everywhere = [
        record
        for record in files
        if record.sha1 not in (FILE_SEEN_ON_WIN11_ONLY, FILE_NEVER_SEEN)
    ]
    observations = [
        Observation(device.id, record.sha1, _path_on(device, record))
        for device in devices
        for record in everywhere
    ]
    observations.append(
        Observation(
            DEVICE_WIN11,
            FILE_SEEN_ON_WIN11_ONLY,
            "C:\\Users\\alex\\AppData\\Local\\Temp\\dropper.ps1",
        )
    )
    return tuple(observations)


def _path_on(device: Device, record: FileRecord) -> str:
    name = record.file_name or record.sha1
    if device.os_platform == "macOS":
        return f"/Users/alex/Downloads/{name}"
    if device.os_platform == "Linux":
        return f"/home/builder/downloads/{name}"
    if record.sha1 == FILE_MICROSOFT_SIGNED:
        return f"C:\\Windows\\System32\\{name}"
    return f"C:\\Users\\alex\\Downloads\\{name}"


def _file_evidence(sha1: str, name: str, folder: str) -> Evidence:
    return Evidence(
        entity_type="File",
        sha1=sha1,
        file_name=name,
        file_path=folder,
        detection_status="Detected",
    )


def _alerts() -> tuple[Alert, ...]:
    downloads = "C:\\Users\\alex\\Downloads"
    user = Evidence(entity_type="User", account_name="alex", domain_name="CONTOSO")
    rundll32 = Evidence(
        entity_type="Process",
        sha1=FILE_MICROSOFT_SIGNED,
        file_name="rundll32.exe",
        file_path="C:\\Windows\\System32",
        process_id=7412,
        process_command_line="rundll32.exe invoice_viewer.dll,Start",
    )

    return (
        Alert(
            id=ALERT_THIRD_PARTY,
            title="Suspicious invoice viewer launched through rundll32",
            machine_id=DEVICE_WIN10,
            created=_NOW - timedelta(minutes=20),
            severity="High",
            category="Execution",
            threat_family_name="Wacatac",
            evidence=(
                _file_evidence(FILE_THIRD_PARTY, "invoice_viewer.exe", downloads),
                rundll32,
                user,
            ),
        ),
        Alert(
            id=ALERT_UNSIGNED,
            title="Unsigned backdoor dropped by a PowerShell script",
            machine_id=DEVICE_WIN11,
            created=_NOW - timedelta(minutes=15),
            severity="High",
            category="Malware",
            evidence=(
                _file_evidence(FILE_UNSIGNED, "payload.exe", downloads),
                _file_evidence(
                    FILE_SEEN_ON_WIN11_ONLY,
                    "dropper.ps1",
                    "C:\\Users\\alex\\AppData\\Local\\Temp",
                ),
            ),
        ),
        Alert(
            id=ALERT_SERVER,
            title="Malicious invoice viewer on a server",
            machine_id=DEVICE_SERVER_2019,
            created=_NOW - timedelta(minutes=12),
            severity="Medium",
            category="Malware",
            evidence=(
                _file_evidence(FILE_THIRD_PARTY, "invoice_viewer.exe", downloads),
            ),
        ),
        Alert(
            id=ALERT_MACOS,
            title="Unsigned payload on a Mac",
            machine_id=DEVICE_MACOS,
            created=_NOW - timedelta(minutes=10),
            severity="Medium",
            category="Malware",
            evidence=(
                _file_evidence(FILE_UNSIGNED, "payload.exe", "/Users/alex/Downloads"),
            ),
        ),
        Alert(
            id=ALERT_INVALID_CERTIFICATE,
            title="File with a forged Microsoft signature",
            machine_id=DEVICE_WIN10_AV_PASSIVE,
            created=_NOW - timedelta(minutes=8),
            severity="High",
            category="DefenseEvasion",
            evidence=(
                _file_evidence(FILE_INVALID_CERTIFICATE, "msupdate.exe", downloads),
                Evidence(
                    entity_type="Process",
                    sha1=FILE_TRUSTED_PUBLISHER,
                    file_name="fabrikam_agent.exe",
                    file_path="C:\\Program Files\\Fabrikam",
                    process_id=4120,
                    process_command_line="fabrikam_agent.exe --update",
                ),
            ),
        ),
        Alert(
            id=ALERT_INACTIVE_DEVICE,
            title="Unsigned payload on a device that went offline",
            machine_id=DEVICE_INACTIVE,
            created=_NOW - timedelta(days=5, minutes=5),
            severity="Low",
            category="Malware",
            evidence=(_file_evidence(FILE_UNSIGNED, "payload.exe", downloads),),
        ),
    )
