"""Import through the real stack: one bad image fails alone, and an interrupted import resumes exactly."""

from __future__ import annotations

from plugin_api.images import ImageItem, content_uuid, items_from_paths
from plugin_api.importer import NOT_IMPORTED, import_images
from plugin_api.schema import create_image_collection
from tests.e2e.helpers import service_error
from tests.media import encode, photo


def _count(collection) -> int:
    return collection.aggregate.over_all(total_count=True).total_count


def _exists(collection, uuid: str) -> bool:
    return collection.data.exists(uuid)


def test_one_corrupt_image_fails_alone_with_the_services_message(stack, client, collection_name):
    collection = create_image_collection(client, collection_name)
    good = [encode(photo(seed=200 + i), "JPEG") for i in range(5)]
    png = encode(photo(seed=299), "PNG")
    corrupt = png[: len(png) // 2]  # a truncated PNG: right header, broken data
    items = [ImageItem.from_bytes(d, f"good{i}.jpg") for i, d in enumerate(good[:3])]
    items += [ImageItem.from_bytes(corrupt, "broken.png")]
    items += [ImageItem.from_bytes(d, f"good{i}.jpg") for i, d in enumerate(good[3:], start=3)]

    report = import_images(collection, items, batch_size=16, progress=False)

    assert (report.stored, report.skipped, report.failed) == (5, 0, 1), report.details()
    [failure] = report.failures
    assert failure.source == "broken.png"
    assert service_error(stack.service.url, corrupt) in failure.error  # our JSON error, through Weaviate
    assert [o.source for o in report.outcomes] == [i.source for i in items]  # one outcome per item, in order
    assert all(_exists(collection, content_uuid(d)) for d in good)
    assert not _exists(collection, content_uuid(corrupt))
    assert _count(collection) == 5


def test_unreadable_file_and_duplicates_are_reported_per_item(client, collection_name, tmp_path):
    collection = create_image_collection(client, collection_name)
    data = encode(photo(seed=310), "PNG")
    (tmp_path / "a.png").write_bytes(data)
    (tmp_path / "copy-of-a.png").write_bytes(data)
    items = items_from_paths([tmp_path, tmp_path / "gone.png"])
    report = import_images(collection, items, progress=False)
    by_source = {o.source.rsplit("/", 1)[-1]: o for o in report.outcomes}
    assert by_source["a.png"].status == "stored"
    assert by_source["copy-of-a.png"].status == "skipped"  # same content, same UUID
    assert by_source["gone.png"].status == "failed" and "cannot read" in by_source["gone.png"].error
    assert _count(collection) == 1


def test_service_stopped_mid_import_then_rerun_stores_exactly_the_missing(stack, client, collection_name):
    collection = create_image_collection(client, collection_name)
    images = [encode(photo(seed=400 + i), "JPEG") for i in range(12)]
    items = [ImageItem.from_bytes(d, f"img{i:02}.jpg", caption=f"photo {i}") for i, d in enumerate(images)]
    batches: list[list] = []

    def stop_service_after_first_batch(outcomes):
        batches.append(outcomes)
        if len(batches) == 1:
            stack.service.stop()

    try:  # max_wait=0: no retry, the import stops at once (tests/e2e/test_import_outage.py waits)
        first = import_images(
            collection, items, batch_size=4, progress=False, on_batch=stop_service_after_first_batch, max_wait=0
        )
    finally:
        if not stack.service.running:
            stack.service.start()

    assert (first.stored, first.skipped, first.failed) == (4, 0, 8), first.details()
    assert [o.status for o in first.outcomes] == ["stored"] * 4 + ["failed"] * 8
    # Weaviate's transport error for /vectorize (connection refused), or our 503 while draining
    assert "send POST request" in first.stopped or "fail with status 503" in first.stopped, first.stopped
    assert all(
        f.error.startswith(NOT_IMPORTED) and f.cause == "not imported, the import stopped" for f in first.failures
    )
    assert _count(collection) == 4

    second = import_images(collection, items, batch_size=4, progress=False)
    assert (second.stored, second.skipped, second.failed) == (8, 4, 0), second.details()
    assert [o.status for o in second.outcomes] == ["skipped"] * 4 + ["stored"] * 8
    assert _count(collection) == 12  # no duplicates
    assert {str(o.uuid) for o in collection.iterator()} == {content_uuid(d) for d in images}

    third = import_images(collection, items, batch_size=5, progress=False)
    assert (third.stored, third.skipped, third.failed) == (0, 12, 0)


def test_missing_weighted_field_is_refused_before_weaviate_misapplies_weights(client, collection_name):
    collection = create_image_collection(
        client, collection_name, text_fields=["caption"], weights={"image": 3, "caption": 1}
    )
    with_caption = ImageItem.from_bytes(encode(photo(seed=500), "PNG"), "ok", caption="a caption")
    without = ImageItem.from_bytes(encode(photo(seed=501), "PNG"), "no-caption")
    report = import_images(collection, [with_caption, without], progress=False)
    assert [o.status for o in report.outcomes] == ["stored", "failed"]
    assert "caption" in report.failures[0].error
    assert _count(collection) == 1


def test_large_photos_are_downscaled_before_upload(client, collection_name):
    import base64
    import io

    from PIL import Image

    collection = create_image_collection(client, collection_name)
    data = encode(photo(width=1200, height=800, seed=600), "JPEG")
    report = import_images(collection, [ImageItem.from_bytes(data, "big")], max_side=300, progress=False)
    assert report.stored == 1
    blob = collection.query.fetch_object_by_id(content_uuid(data), return_properties=["image"]).properties["image"]
    assert Image.open(io.BytesIO(base64.b64decode(blob))).size == (300, 200)
