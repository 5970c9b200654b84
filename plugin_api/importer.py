"""Import images into a multi2vec-clip collection: batched, resumable, with a report grouped by cause.

Each object's UUID comes from its image bytes, so a re-run finds what is already stored and skips it;
only what is missing is sent again. A failure of one object (unreadable file, not an image) is recorded
against it with Weaviate's message, which quotes our service's JSON error, and the import goes on.

A failure that passes by itself (the service down, restarting or still loading its model, a timeout)
is retried with growing pauses; when a :class:`~plugin_api.readiness.Readiness` is given, each retry
first waits until Weaviate and the service say they are ready. When no object could be stored for
``max_wait`` seconds, the import stops: what is left is reported as not imported, and a re-run finishes it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter
from weaviate.collections import Collection
from weaviate.exceptions import WeaviateInsertManyAllFailedError

from plugin_api.images import ImageItem, content_uuid, downscale, to_base64
from plugin_api.readiness import DEFAULT_MAX_WAIT, Readiness, ServiceDown, is_transient
from plugin_api.schema import weighted_fields

Status = Literal["stored", "skipped", "failed"]
_ALL_FAILED_PREFIX = "Every object failed during insertion. Here is the set of all errors: "
NOT_IMPORTED = "not imported: the import stopped"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectOutcome:
    """What happened to one item: ``stored``, ``skipped`` (already there) or ``failed`` (``error`` says why)."""

    source: str
    status: Status
    uuid: str | None
    error: str | None = None

    @property
    def cause(self) -> str | None:
        """The failure's kind in a few words (see :func:`failure_cause`), None unless failed."""
        return failure_cause(self.error or "") if self.status == "failed" else None


# Failure kinds, first match wins; a message that matches none is its own kind.
_CAUSES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(f"^{re.escape(NOT_IMPORTED)}"), "not imported, the import stopped"),
    (re.compile(r"^cannot read: "), "cannot read the file"),
    (re.compile(r"^missing \["), "missing a weighted field"),
    (re.compile(r"is not an image"), "not an image"),
    (re.compile(r"could not be decoded|is not a readable image|has no pixels|is not valid base64"), "damaged image"),
    (re.compile(r"\bis empty\b"), "empty file"),
)
_TRANSIENT_CAUSE = "the inference service was unreachable or busy"
_LIMIT = re.compile(r"\b(VECTORIZER_[A-Z_]+)")


def failure_cause(error: str) -> str:
    """A short name for the kind of a failure message, the same for every file that failed alike:
    ``not an image``, ``damaged image``, ``over the service's limit VECTORIZER_MAX_IMAGE_PIXELS``, ..."""
    for pattern, cause in _CAUSES:
        if pattern.search(error):
            return cause
    if is_transient(error):
        return _TRANSIENT_CAUSE
    limit = _LIMIT.search(error)
    if limit:
        return f"over the service's limit {limit.group(1)}"
    return error


@dataclass
class ImportReport:
    """Every item's outcome, in the order given. ``stopped`` says why the import stopped before the
    end (the service stayed down), or is None when every item was tried."""

    outcomes: list[ObjectOutcome] = field(default_factory=list)
    stopped: str | None = None

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

    def failures_by_cause(self) -> dict[str, list[ObjectOutcome]]:
        """Failed outcomes grouped by :attr:`ObjectOutcome.cause`, largest group first."""
        groups: dict[str, list[ObjectOutcome]] = {}
        for outcome in self.failures:
            groups.setdefault(outcome.cause or "", []).append(outcome)
        return dict(sorted(groups.items(), key=lambda group: -len(group[1])))

    def summary(self) -> str:
        return (
            f"{self.stored} stored, {self.skipped} skipped (already there), {self.failed} failed "
            f"(of {len(self.outcomes)})"
        )

    def details(self, names: int = 5) -> str:
        """The summary, then one line per kind of failure naming up to ``names`` files, with one example
        of the message under it when the kind is a short name for it."""
        lines = [self.summary()]
        for cause, outcomes in self.failures_by_cause().items():
            shown = ", ".join(o.source for o in outcomes[:names])
            more = f", … and {len(outcomes) - names} more" if len(outcomes) > names else ""
            lines.append(f"  {len(outcomes)} file{'s' if len(outcomes) > 1 else ''}: {cause} ({shown}{more})")
            example = outcomes[0].error or ""
            if example != cause and not example.startswith(NOT_IMPORTED):
                lines.append(f"      e.g. {example if len(example) <= 200 else example[:199] + '…'}")
        return "\n".join(lines)


@dataclass
class _Pending:
    item: ImageItem
    uuid: str
    properties: dict[str, Any]


class _GiveUp(Exception):
    """No object could be stored for ``max_wait`` seconds: the message is the last reason."""


@dataclass
class _Outage:
    """Transient failures since the last object stored: when they began, how often we retried.

    ``wait`` sleeps before the next try (0.5 s, doubling, at most 8 s), then waits for ``readiness``
    if there is one; it raises :class:`_GiveUp` once the outage has lasted ``max_wait`` seconds.
    """

    max_wait: float
    readiness: Readiness | None
    on_wait: Callable[[str], None]
    started: float | None = None
    attempts: int = 0

    def wait(self, reason: str) -> None:
        now = time.monotonic()
        if self.started is None:
            self.started = now
            if self.max_wait > 0:
                self.on_wait(f"retrying for up to {self.max_wait:.0f} s: {reason}")
        deadline = self.started + self.max_wait
        if now >= deadline:
            raise self._give_up(reason)
        time.sleep(min(0.5 * 2**self.attempts, 8.0, deadline - now))
        self.attempts += 1
        if self.readiness is not None:
            try:
                self.readiness.wait(max(0.0, deadline - time.monotonic()))
            except ServiceDown as exc:
                raise self._give_up(exc.problem) from None

    def _give_up(self, reason: str) -> _GiveUp:
        return _GiveUp(f"{reason} (nothing stored for {self.max_wait:.0f} s)" if self.max_wait else reason)

    def progress(self) -> None:
        """An object was stored: the outage, if any, is over."""
        if self.started is not None:
            self.on_wait("the service answers again; import resumed")
        self.reset()

    def reset(self) -> None:
        self.started, self.attempts = None, 0

    def service_ready(self) -> bool:
        """After giving up: True when the service says it is ready (the failures were the objects' own)."""
        return self.readiness is not None and self.readiness.problem() is None


class _Stopped(Exception):
    def __init__(self, reason: str, outcomes: list[ObjectOutcome]) -> None:
        super().__init__(reason)
        self.reason, self.outcomes = reason, outcomes


def import_images(
    collection: Collection,
    items: Iterable[ImageItem],
    *,
    image_property: str = "image",
    batch_size: int = 32,
    max_side: int | None = None,
    progress: bool = True,
    on_batch: Callable[[list[ObjectOutcome]], None] | None = None,
    max_wait: float = DEFAULT_MAX_WAIT,
    readiness: Readiness | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> ImportReport:
    """Store every item in ``collection`` (image as base64 in ``image_property``); never raises for one
    bad item. ``max_side`` downscales larger images before upload (see :func:`plugin_api.images.downscale`).
    ``on_batch`` is called with the outcomes of each batch as soon as it is done.

    Transient failures are retried until no object could be stored for ``max_wait`` seconds (0: never
    retried); then ``report.stopped`` says why and the rest is reported as not imported. ``readiness``
    lets each retry wait for Weaviate and the service rather than resend blindly; ``on_wait`` is told,
    in one line, when retrying starts and when the service answers again (default: a log warning)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    if max_wait < 0:
        raise ValueError(f"max_wait must be >= 0, not {max_wait}")
    items = list(items)
    required = weighted_fields(collection) - {image_property}
    report = ImportReport()
    seen: dict[str, str] = {}
    outage = _Outage(max_wait, readiness, on_wait or _log.warning)
    from tqdm import tqdm

    with (
        _quiet_client_batch_log(),
        tqdm(total=len(items), unit="img", desc=f"import into {collection.name}", disable=not progress) as bar,
    ):
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            if report.stopped is not None:
                outcomes = [
                    ObjectOutcome(i.source, "failed", None, f"{NOT_IMPORTED} ({report.stopped})") for i in batch
                ]
            else:
                try:
                    outcomes = _import_batch(
                        collection,
                        batch,
                        image_property=image_property,
                        max_side=max_side,
                        required=required,
                        seen=seen,
                        outage=outage,
                    )
                except _Stopped as stop:
                    report.stopped, outcomes = stop.reason, stop.outcomes
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
    outage: _Outage,
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

    errors: dict[int, str] = {}  # the last transient error of each object still pending
    sent: set[int] = set()  # sent once already: found stored on a retry, it was stored by that try
    while pending:
        try:
            try:
                existing = _existing_uuids(collection, [p.uuid for p in pending.values()])
            except Exception as exc:  # noqa: BLE001 - Weaviate unreachable or failing: retried, or these fail
                message = f"cannot check for existing objects: {_one_line(exc)}"
                if not is_transient(message):
                    done.update(
                        {i: ObjectOutcome(p.item.source, "failed", p.uuid, message) for i, p in pending.items()}
                    )
                    break
                errors = dict.fromkeys(pending, message)
                outage.wait(message)
                continue
            for index in [i for i, p in pending.items() if p.uuid in existing]:
                p = pending.pop(index)
                if index in sent:  # e.g. the client timed out while Weaviate stored it
                    done[index] = ObjectOutcome(p.item.source, "stored", p.uuid)
                    outage.progress()
                else:
                    done[index] = ObjectOutcome(p.item.source, "skipped", p.uuid, "already stored")
            order = list(pending)
            sent.update(order)
            errors = {}
            for position, error in _insert(collection, [pending[i] for i in order]).items():
                index = order[position]
                if error is not None and is_transient(error):
                    errors[index] = error
                    continue
                p = pending.pop(index)
                done[index] = ObjectOutcome(p.item.source, "failed" if error else "stored", p.uuid, error)
                if error is None:
                    outage.progress()
            if pending:
                outage.wait(next(iter(errors.values())))
        except _GiveUp as give_up:
            # Others of this batch were stored and the service says it is ready: these objects fail on
            # their own. When none was, the service that fails may not be the one the probe asks (a
            # collection with its own inferenceUrl): stop rather than wait that long for every batch.
            if any(o.status == "stored" for o in done.values()) and outage.service_ready():
                done.update({i: ObjectOutcome(p.item.source, "failed", p.uuid, errors[i]) for i, p in pending.items()})
                outage.reset()
                break
            reason = str(give_up)
            done.update(
                {
                    i: ObjectOutcome(p.item.source, "failed", p.uuid, f"{NOT_IMPORTED} ({reason})")
                    for i, p in pending.items()
                }
            )
            raise _Stopped(reason, [done[i] for i in range(len(batch))]) from None
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
        text = str(exc).strip()
        text = text[len(_ALL_FAILED_PREFIX) :] if text.startswith(_ALL_FAILED_PREFIX) else text
        distinct = sorted({" ".join(line.split()) for line in text.splitlines() if line.strip()})
        if len(objects) == 1:
            return {0: "; ".join(distinct) or type(exc).__name__}
        if distinct and all(is_transient(message) for message in distinct):
            return dict.fromkeys(range(len(objects)), distinct[0])  # the service down: all are tried again
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
