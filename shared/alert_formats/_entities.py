"""Entity documents with ``$id``/``$ref`` references, as Sentinel and Defender use.

An entity that appears more than once is written in full the first time, with an
``"$id"``, and later only as ``{"$ref": "<that id>"}``. ``EntityGraph`` indexes one
document so that a reference can be followed back to its object. References are
followed one step at a time, on demand, so a reference cycle cannot loop.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.alert_formats._common import Reading
from shared.alert_formats._values import at, items, mapping, text


class EntityGraph:
    """The objects of one entity document, by their ``$id``."""

    def __init__(self, root: object) -> None:
        self._by_id: dict[str, Mapping[str, object]] = {}
        self.objects: list[Mapping[str, object]] = []

        stack = [root]
        while stack:
            current = stack.pop()
            if isinstance(current, dict):
                self.objects.append(current)
                entity_id = _identifier(current.get("$id"))
                if entity_id is not None:
                    self._by_id.setdefault(entity_id, current)
                stack.extend(current.values())
            elif isinstance(current, list):
                stack.extend(current)

    def resolve(self, value: object) -> Mapping[str, object] | None:
        """The object ``value`` is, or refers to; None when it is neither."""
        entity = mapping(value)
        if entity is None:
            return None
        if "$ref" in entity:
            reference = _identifier(entity.get("$ref"))
            return self._by_id.get(reference) if reference is not None else None
        return entity


def entity_type(entity: Mapping[str, object]) -> str | None:
    """The lower-case ``Type`` of an entity ("host", "file", "process"...)."""
    kind = text(entity.get("Type"))
    return kind.lower() if kind is not None else None


def file_hashes(
    graph: EntityGraph,
    file: Mapping[str, object],
    reading: Reading,
    position: str,
) -> tuple[str | None, str | None]:
    """The SHA-1 and SHA-256 listed in a file entity's ``FileHashes``.

    A listed SHA-1 that is malformed is rejected and read as none.
    """
    sha1 = sha256 = None
    for hashed in items(file.get("FileHashes")):
        entry = graph.resolve(hashed)
        if entry is None:
            continue

        algorithm = (text(entry.get("Algorithm")) or "").upper()
        if algorithm == "SHA1" and sha1 is None:
            sha1 = reading.sha1(entry.get("Value"), at(position, "FileHashes"))
        elif algorithm == "SHA256" and sha256 is None:
            sha256 = text(entry.get("Value"))

    return sha1, sha256


def _identifier(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return text(value)
