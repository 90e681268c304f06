"""Every sample message yields exactly the targets and rejections stated here."""

from __future__ import annotations

import pytest

from shared.alert_formats import extract
from shared.targets import AlertFormat
from tests.conftest import DATA

# Alert, device and file ids of the samples, named for the sample that uses them.
STREAM_DEVICE_1 = "a84bba07931db925306a0799dc6ebd718b8c764d"
STREAM_DEVICE_2 = "eb31e7ea468c6414ce9da201e0c0d1a0dc00f0e7"
STREAM_DEVICE_3 = "0a4f9fa423350b233931da53f50a0be52d057e0b"
STREAM_DEVICE_4 = "7ba054769ba41cbb44f0753903870712d5f63adf"
STREAM_DEVICE_5 = "b983b410e6f58de9b9d56191e28c2f2388dc10da"
STREAM_DEVICE_6 = "052e96819b8ac3e6dfeb63cc17fd04d501499575"

GRAPH_DEVICE_1 = "7313aee99add6cd71b8890a6299c08927cae5784"
GRAPH_SERVER_1 = "2019e78d0e2292d76334d306f5ef11798d409eb7"
GRAPH_SERVER_2 = "5962fd301a84cc84eab845e9c9d83589a8070fec"
GRAPH_DEVICE_4 = "1f891a45d218bafcbbaa49132982769100a24a65"
GRAPH_DEVICE_5 = "59a8d4032cb9d5059761791b353b191fd0bae5e6"
GRAPH_DEVICE_6 = "75e3d1f92f0049f6efb5ea7841cba6dcd9ed85c9"

MDE_DEVICE_1 = "45f772d01e2d5cf093ce0903b81b8ee556436cdc"
MDE_DEVICE_2 = "942bed6734becc88608b144b0b2a03738e1539a7"
MDE_DEVICE_3 = "dd0a13aa1830943f84ed9e7f2baf78d26c9730b2"

SENTINEL_DEVICE_1 = "71c19baf8be849c2e1d61b2d896a3a8237b9f3f1"
SENTINEL_WEB_1 = "adbf5a769f2f957d9a6894ce10a36c3a3be49454"
SENTINEL_WEB_2 = "63196fae75d1d2b4c1ef2005eeb2e61e1b48173c"

Expected = set[tuple[str, str, str, str]]

CASES: list[tuple[str, AlertFormat, Expected, set[tuple[str, str]]]] = [
    (
        "streaming/file_and_machine.json",
        AlertFormat.STREAMING,
        {
            (
                "da638534938542195558_2006612345",
                STREAM_DEVICE_1,
                "1c0acb3dea13519a60a077bbd142880e8427abee",
                "file",
            )
        },
        set(),
    ),
    (
        "streaming/process_device_in_additional_fields.json",
        AlertFormat.STREAMING,
        {
            (
                "da638534951209876543_-1180534512",
                STREAM_DEVICE_2,
                "1a714a16e81c1aad236d31def0b9d2993134b65a",
                "process",
            )
        },
        set(),
    ),
    (
        "streaming/alert_info_enrichment.json",
        AlertFormat.STREAMING,
        {
            (
                "da638534960011223344_1364969609",
                STREAM_DEVICE_3,
                "d04ab3005440698c83998e1705bb7a7af3d2e242",
                "file",
            )
        },
        set(),
    ),
    (
        "streaming/device_from_other_record.json",
        AlertFormat.STREAMING,
        {
            (
                "da638534972233445566_887766554",
                STREAM_DEVICE_4,
                "5ba9682170905f4ec5a399fc47f5edbada514e28",
                "file",
            )
        },
        set(),
    ),
    (
        "streaming/bare_record.json",
        AlertFormat.STREAMING,
        {
            (
                "da638534980099887766_1122334455",
                STREAM_DEVICE_5,
                "5bffacefd697312bba82af983eadec108b08c3ce",
                "file",
            )
        },
        set(),
    ),
    (
        "streaming/list_of_records.json",
        AlertFormat.STREAMING,
        {
            (
                "da638534990011112222_2233445566",
                STREAM_DEVICE_6,
                "6e61d6b91cda411dfd72f1a3447c745c48c0b90a",
                "file",
            ),
            (
                "da638534990033334444_3344556677",
                STREAM_DEVICE_1,
                "186e5761b1524bf0b0947c5eba021711473613ef",
                "file",
            ),
        },
        set(),
    ),
    (
        "streaming/mixed_good_and_bad.json",
        AlertFormat.STREAMING,
        {
            (
                "da638535000011112222_4455667788",
                STREAM_DEVICE_3,
                "407ec6a1b044da05ca4ed81004c1dec8ee162646",
                "file",
            ),
            (
                "da638535000011112222_4455667788",
                STREAM_DEVICE_3,
                "f60f290d94d7efecc22a4e5d4697ea93ff69b525",
                "file",
            ),
            (
                "da638535000011112222_4455667788",
                STREAM_DEVICE_2,
                "6c2e0ef82b15fc467fe93e81dd58a0c1f9a51bb5",
                "process",
            ),
        },
        {
            ("invalid_sha1", "records[1].properties.SHA1"),
            ("invalid_device_id", "records[2].properties.DeviceId"),
            ("no_device", "records[2]"),
            ("invalid_record", "records[3]"),
            ("missing_alert_id", "records[4].properties.AlertId"),
            ("not_json", "records[5].properties.AdditionalFields"),
        },
    ),
    (
        "graph/single_alert.json",
        AlertFormat.GRAPH,
        {
            (
                "da638535120355001234_1546712345",
                GRAPH_DEVICE_1,
                "11e9577d7d5abfdcb64f3f0468e068a29301ffdb",
                "file",
            ),
            (
                "da638535120355001234_1546712345",
                GRAPH_DEVICE_1,
                "ef1b12a80bf8843075b7d1fb63c0ad3995bd6c96",
                "process",
            ),
        },
        set(),
    ),
    (
        "graph/value_list.json",
        AlertFormat.GRAPH,
        {
            (
                "da638535130011223344_998877665",
                GRAPH_SERVER_1,
                "594d17a783a06aac2f80f9701b53eba5c59acde6",
                "file",
            ),
            (
                "da638535130011223344_998877665",
                GRAPH_SERVER_2,
                "594d17a783a06aac2f80f9701b53eba5c59acde6",
                "file",
            ),
            (
                "da638535130055667788_112233445",
                GRAPH_DEVICE_4,
                "14cbb7928ac4d8b505ff3a5c241f7e19d98e6524",
                "file",
            ),
        },
        set(),
    ),
    (
        "graph/file_and_process_same_sha1.json",
        AlertFormat.GRAPH,
        {
            (
                "da638535140099998888_776655443",
                GRAPH_DEVICE_5,
                "7bb9d2759235937aa53bb93775c513a5890c54ec",
                "file",
            )
        },
        set(),
    ),
    (
        "graph/bad_ids.json",
        AlertFormat.GRAPH,
        {
            # The first file's own device id is malformed, so it falls back on the
            # alert's only good device.
            (
                "da638535150011223344_554433221",
                GRAPH_DEVICE_6,
                "182905b0e600fe7bc5c246dd3292aa1c30da8da8",
                "file",
            ),
            (
                "da638535150011223344_554433221",
                GRAPH_DEVICE_6,
                "ecf8a4f09d0285c8b974c55ab2eb25f106033639",
                "file",
            ),
        },
        {
            ("invalid_device_id", "evidence[0].mdeDeviceId"),
            ("invalid_sha1", "evidence[1].fileDetails.sha1"),
        },
    ),
    (
        "mde/single_alert.json",
        AlertFormat.MDE,
        {
            (
                "da638535170000111222_1987654321",
                MDE_DEVICE_1,
                "8892711b041df3837aa39b66303b554b72f5109a",
                "file",
            ),
            (
                "da638535170000111222_1987654321",
                MDE_DEVICE_1,
                "55cb61a5f65a1343be4d769e02049fb045decf71",
                "process",
            ),
        },
        set(),
    ),
    (
        "mde/alert_list.json",
        AlertFormat.MDE,
        {
            (
                "da638535180011112222_123456789",
                MDE_DEVICE_2,
                "48a9a7bb604c3039b4b1f56ee62dd5a7618638bc",
                "file",
            ),
            (
                "da638535180033334444_234567891",
                MDE_DEVICE_3,
                "662a81f9ee872172dcce4bbf5b4d287659214f3d",
                "file",
            ),
        },
        set(),
    ),
    (
        "mde/no_machine_id.json",
        AlertFormat.MDE,
        set(),
        {("no_device", "evidence[0]")},
    ),
    (
        "sentinel/mdatp_row.json",
        AlertFormat.SENTINEL,
        {
            (
                "da3cb12a2f-33e5-42ea-9238-be9ffbc212e2_1",
                SENTINEL_DEVICE_1,
                "edd542db04f0bb544c90f1675da37a9eaec0d213",
                "process",
            )
        },
        set(),
    ),
    (
        "sentinel/rows_multiple_hosts.json",
        AlertFormat.SENTINEL,
        {
            (
                "da638535210011223344_667788990",
                SENTINEL_WEB_1,
                "0ddf2c983e07bf2b826e0b302f3186304e83a8a5",
                "file",
            ),
            (
                "da638535210011223344_667788990",
                SENTINEL_WEB_2,
                "0ddf2c983e07bf2b826e0b302f3186304e83a8a5",
                "file",
            ),
            # This file names its host, so it is a target on that host only.
            (
                "da638535210011223344_667788990",
                SENTINEL_WEB_2,
                "947264e1778236fe9974aa502d4d019d3e2844e1",
                "file",
            ),
        },
        set(),
    ),
    (
        "sentinel/row_list_without_defender_id.json",
        AlertFormat.SENTINEL,
        set(),
        {
            ("invalid_device_id", "[0].Entities[0].MdatpDeviceId"),
            ("no_device", "[0].Entities[1]"),
        },
    ),
]


@pytest.mark.parametrize(
    ("sample", "alert_format", "expected_targets", "expected_rejections"),
    CASES,
    ids=[case[0] for case in CASES],
)
def test_sample_yields_the_stated_targets_and_rejections(
    sample: str,
    alert_format: AlertFormat,
    expected_targets: Expected,
    expected_rejections: set[tuple[str, str]],
) -> None:
    body = (DATA / sample).read_bytes()

    extraction = extract(body, source=sample)

    targets = {
        (target.alert_id, target.device_id, target.sha1, str(target.evidence))
        for target in extraction.targets
    }
    rejections = {
        (rejection.reason, rejection.position) for rejection in extraction.rejections
    }
    assert targets == expected_targets
    assert rejections == expected_rejections
    assert len(extraction.targets) == len(targets), "a target was named twice"
    assert extraction.formats == (alert_format,)
    assert all(rejection.source == sample for rejection in extraction.rejections)


def test_every_sample_file_is_in_the_table() -> None:
    samples = {
        path.relative_to(DATA).as_posix()
        for folder in ("streaming", "graph", "mde", "sentinel")
        for path in (DATA / folder).glob("*.json")
    }

    assert samples == {case[0] for case in CASES}


def test_sample_parent_process_image_is_never_a_target() -> None:
    parents = {
        "streaming/process_device_in_additional_fields.json": (
            "579f09222a2bed27a584d21b54fa8973381f412a"
        ),
        "graph/single_alert.json": "b552cf3c4b2fdd3a1ed8cf0ccf5ee33eb6dfd677",
        "sentinel/mdatp_row.json": "1c77737b081faec1cd8cf5c82f96ec8fffd4051f",
    }

    for sample, parent_sha1 in parents.items():
        body = (DATA / sample).read_bytes()
        assert parent_sha1 in body.decode(), f"{sample} should name the parent"

        extraction = extract(body, source=sample)

        assert parent_sha1 not in {target.sha1 for target in extraction.targets}
