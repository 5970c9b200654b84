"""Import images into a multi2vec-clip collection: batched, resumable, one report line per object.

Each object's UUID comes from its image bytes, so a re-run finds what is already stored and skips it;
only what is missing is sent again. A failure (unreadable file, not an image, the inference service
down) is recorded against that object with Weaviate's message, which quotes our service's JSON error,
and the import goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter
from weaviate.collections import Collection
from weaviate.exceptions import WeaviateInsertManyAllFailedError

from plugin_api.images import ImageItem, content_uuid, downscale, to_base64
from plugin_api.schema import weighted_fields

Status = Literal["stored", "skipped", "failed"]
_ALL_FAILED_PREFIX = "Every object failed during insertion. Here is the set of all errors: "


@dataclass(frozen=True)
class ObjectOutcome:
    """What happened to one item: ``stored``, ``skipped`` (already there) or ``failed`` (``error`` says why)."""

    source: str
    status: Status
    uuid: str | None
    error: str | None = None


@dataclass
class ImportReport:
    outcomes: list[ObjectOutcome] = field(default_factory=list)

    def _count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def stored(self) -> int:
        return self._count("stored")

    @property
    def skipped(self) -> int:
        return self._count("skipped")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def failures(self) -> list[ObjectOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def summary(self) -> str:
        return (
            f"{self.stored} stored, {self.skipped} skipped (already there), {self.failed} failed "
            f"(of {len(self.outcomes)})"
        )

    def details(self) -> str:
        """The summary, then one line per failure."""
        return "\n".join([self.summary(), *(f"  FAILED {o.source}: {o.error}" for o in self.failures)])


@dataclass
class _Pending:
    item: ImageItem
    uuid: str
    properties: dict[str, Any]


def import_images(
    collection: Collection,
    items: Iterable[ImageItem],
    *,
    image_property: str = "image",
    batch_size: int = 32,
    max_side: int | None = None,
    progress: bool = True,
    on_batch: Callable[[list[ObjectOutcome]], None] | None = None,
) -> ImportReport:
    """Store every item in ``collection`` (image as base64 in ``image_property``); never raises for one
    bad item. ``max_side`` downscales larger images before upload (see :func:`plugin_api.images.downscale`).
    ``on_batch`` is called with the outcomes of each batch as soon as it is done."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    items = list(items)
    required = weighted_fields(collection) - {image_property}
    report = ImportReport()
    seen: dict[str, str] = {}
    from tqdm import tqdm

    with (
        _quiet_client_batch_log(),
        tqdm(total=len(items), unit="img", desc=f"import into {collection.name}", disable=not progress) as bar,
    ):
        for start in range(0, len(items), batch_size):
            outcomes = _import_batch(
                collection,
                items[start : start + batch_size],
                image_property=image_property,
                max_side=max_side,
                required=required,
                seen=seen,
            )
            report.outcomes.extend(outcomes)
            bar.update(len(outcomes))
            bar.set_postfix(stored=report.stored, skipped=report.skipped, failed=report.failed)
            if on_batch is not None:
                on_batch(outcomes)
    return report


class _DropBatchFailureLog(logging.Filter):
    """The client logs every failed batch at ERROR, base64 images included; the report says it better."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, dict) and "Failed to send" in str(record.msg.get("message", "")))


@contextmanager
def _quiet_client_batch_log() -> Iterator[None]:
    logger, log_filter = logging.getLogger("weaviate-client"), _DropBatchFailureLog()
    logger.addFilter(log_filter)
    try:
        yield
    finally:
        logger.removeFilter(log_filter)


def _import_batch(
    collection: Collection,
    batch: Sequence[ImageItem],
    *,
    image_property: str,
    max_side: int | None,
    required: set[str],
    seen: dict[str, str],
) -> list[ObjectOutcome]:
    done: dict[int, ObjectOutcome] = {}
    pending: dict[int, _Pending] = {}
    for index, item in enumerate(batch):
        try:
            data = item.read()
        except (OSError, ValueError) as exc:
            done[index] = ObjectOutcome(item.source, "failed", None, f"cannot read: {exc}")
            continue
        uuid = content_uuid(data)
        if uuid in seen:
            done[index] = ObjectOutcome(item.source, "skipped", uuid, f"same image as {seen[uuid]}")
            continue
        seen[uuid] = item.source
        missing = sorted(f for f in required if item.properties.get(f) in (None, "", []))
        if missing:
            done[index] = ObjectOutcome(
                item.source,
                "failed",
                uuid,
                f"missing {missing}: the collection's vectorizer has weights, and Weaviate "
                f"pairs weights with the fields present, so every weighted field is required",
            )
            continue
        blob = downscale(data, max_side) if max_side else data
        pending[index] = _Pending(item, uuid, {**item.properties, image_property: to_base64(blob)})

    if pending:
        try:
            existing = _existing_uuids(collection, [p.uuid for p in pending.values()])
        except Exception as exc:  # noqa: BLE001 - Weaviate unreachable: these objects fail, the import goes on
            existing, error = set(), f"cannot check for existing objects: {_one_line(exc)}"
            done.update({i: ObjectOutcome(p.item.source, "failed", p.uuid, error) for i, p in pending.items()})
            pending = {}
        for index in [i for i, p in pending.items() if p.uuid in existing]:
            p = pending.pop(index)
            done[index] = ObjectOutcome(p.item.source, "skipped", p.uuid, "already stored")
        order = list(pending)
        for position, error in _insert(collection, [pending[i] for i in order]).items():
            p = pending[order[position]]
            done[order[position]] = ObjectOutcome(p.item.source, "failed" if error else "stored", p.uuid, error)
    return [done[i] for i in range(len(batch))]


def _existing_uuids(collection: Collection, uuids: list[str]) -> set[str]:
    result = collection.query.fetch_objects(
        filters=Filter.by_id().contains_any(uuids), limit=len(uuids), return_properties=[]
    )
    return {str(o.uuid) for o in result.objects}


def _insert(collection: Collection, objects: list[_Pending]) -> dict[int, str | None]:
    """Position -> None (stored) or the error message, for a batch insert of ``objects``."""
    if not objects:
        return {}
    data = [DataObject(properties=p.properties, uuid=p.uuid) for p in objects]
    try:
        result = collection.data.insert_many(data)
    except WeaviateInsertManyAllFailedError as exc:
        if len(objects) == 1:
            return {0: _one_line(exc, strip=_ALL_FAILED_PREFIX)}
        # The client folds every message into one string when all fail; send one by one to keep each.
        return {i: _insert(collection, [p])[0] for i, p in enumerate(objects)}
    except Exception as exc:  # noqa: BLE001 - a transport error fails this batch, not the whole import
        return {i: _one_line(exc) for i in range(len(objects))}
    return {i: (result.errors[i].message if i in result.errors else None) for i in range(len(objects))}


def _one_line(exc: BaseException, strip: str = "") -> str:
    text = str(exc).strip()
    if strip and text.startswith(strip):
        text = text[len(strip) :]
    return " ".join(text.split()) or type(exc).__name__
