"""Gallery enrolment, deletion and the persisted index, across restarts, on a real database."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from service.config import IndexSettings, Settings
from service.db.models import FaceTemplate, Subject
from service.db.vectors import embedding_from_bytes
from service.embeddings.pipeline import FacePipeline
from service.errors import PackMismatch
from service.index.persistence import read_manifest
from service.runtime import Runtime
from tests.conftest import encode, lfw_path, main_face
from tests.fixtures import OPERATOR, make_settings, restart, top_lists

PROBES = [("Colin_Powell", 3), ("Serena_Williams", 2), ("Hugo_Chavez", 3), ("Laura_Bush", 3), ("Jacques_Chirac", 2)]


def probe_matrix(pipeline: FacePipeline) -> np.ndarray:
    rows = []
    for name, number in PROBES:
        faces = pipeline.analyse_bytes(lfw_path(name, number).read_bytes()).faces
        rows.append(min(faces, key=lambda f: abs(f.face.box[0] + f.face.box[2] / 2 - 125)).embedding)
    return np.stack(rows)


def test_enrolment_is_idempotent_and_rejects_with_reasons(runtime: Runtime) -> None:
    again = runtime.gallery.enrol(OPERATOR, "Colin_Powell", lfw_path("Colin_Powell", 1).read_bytes(), "again.jpg")
    assert again.status == "already_enrolled"
    blank = encode(__import__("PIL.Image", fromlist=["Image"]).new("RGB", (300, 300), (128, 128, 128)), "PNG")
    no_face = runtime.gallery.enrol(OPERATOR, "Nobody", blank, "blank.png")
    assert no_face.status == "rejected" and no_face.reason_code == "no_face"
    garbage = runtime.gallery.enrol(OPERATOR, "Nobody", b"not an image", "x.jpg")
    assert garbage.status == "rejected" and garbage.reason_code == "image_unreadable"
    with runtime.factory() as session:
        assert session.scalar(select(func.count()).where(Subject.custody_reference == "Nobody")) == 0


def test_index_rebuilt_when_missing_or_corrupt_with_identical_results(
    runtime: Runtime, database: str, data_dir: Path, settings: Settings, pipeline: FacePipeline
) -> None:
    queries = probe_matrix(pipeline)
    expected = top_lists(runtime, queries)
    assert [hits[0][0] for hits in expected] == [name for name, _ in PROBES]
    runtime.gallery.save_index()
    index_files = [p for p in runtime.settings.index_dir.iterdir() if p.is_file()]
    assert index_files, "the index is persisted under the data directory"

    reopened = restart(runtime, database, data_dir, settings, pipeline)
    assert reopened.holder.open_status.startswith("loaded"), reopened.holder.open_status
    assert top_lists(reopened, queries) == expected
    reopened.close()

    biggest = max(index_files, key=lambda p: p.stat().st_size)
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0x5A
    biggest.write_bytes(bytes(data))
    corrupted = restart(runtime, database, data_dir, settings, pipeline)
    assert corrupted.holder.open_status.startswith("rebuilt"), corrupted.holder.open_status
    assert top_lists(corrupted, queries) == expected
    corrupted.close()

    for path in runtime.settings.index_dir.iterdir():
        path.unlink()
    missing = restart(runtime, database, data_dir, settings, pipeline)
    assert missing.holder.open_status.startswith("rebuilt"), missing.holder.open_status
    assert top_lists(missing, queries) == expected
    missing.close()


def test_another_process_enrolling_is_seen_without_restart(
    runtime: Runtime, database: str, data_dir: Path, settings: Settings, pipeline: FacePipeline
) -> None:
    other = restart(runtime, database, data_dir, settings, pipeline)
    outcome = other.gallery.enrol(OPERATOR, "Tom_Hanks", lfw_path("Tom_Hanks", 1).read_bytes(), "Tom_Hanks_0001.jpg")
    assert outcome.status == "enrolled"
    other.close()
    faces = pipeline.analyse_bytes(lfw_path("Tom_Hanks", 2).read_bytes()).faces
    query = min(faces, key=lambda f: abs(f.face.box[0] + f.face.box[2] / 2 - 125)).embedding[None, :]
    assert top_lists(runtime, query)[0][0][0] == "Tom_Hanks"


def test_search_with_another_pack_is_refused(runtime: Runtime) -> None:
    with pytest.raises(PackMismatch):
        runtime.searcher.search(np.zeros((1, 128), np.float32), "buffalo_l")


def test_a_record_holds_several_views_and_a_fused_template_kept_in_step(runtime: Runtime) -> None:
    turned = lfw_path("Ricardo_Lagos", 5).read_bytes()  # yaw about -55 degrees: refused as a front view
    alone = runtime.gallery.enrol(OPERATOR, "MK-1", turned, "mk10.jpg")
    assert alone.status == "rejected" and alone.reason_code == "no_front_view"
    as_front = runtime.gallery.enrol(OPERATOR, "MK-1", turned, "mk10.jpg", view="front")
    assert as_front.status == "rejected" and as_front.reason_code == "poor_quality"
    front = runtime.gallery.enrol(OPERATOR, "MK-1", lfw_path("Ricardo_Lagos", 1).read_bytes(), "mk1.jpg")
    assert front.status == "enrolled" and front.view == "front"
    profile = runtime.gallery.enrol(OPERATOR, "MK-1", turned, "mk10.jpg")
    assert profile.status == "enrolled" and profile.view == "left", "an unnamed view is read from its yaw"
    named = runtime.gallery.enrol(
        OPERATOR, "MK-1", lfw_path("Ricardo_Lagos", 2).read_bytes(), "mk2.jpg", view="Three Quarter"
    )
    assert named.status == "enrolled" and named.view == "three_quarter", "free text, tidied"
    record = runtime.gallery.subject(int(front.subject_id or 0))
    assert record.views == ["front", "left", "three_quarter"] and record.templates == 4
    with runtime.factory() as session:
        templates = session.scalars(select(FaceTemplate).where(FaceTemplate.subject_id == front.subject_id)).all()
    views = [embedding_from_bytes(t.embedding) for t in templates if t.kind == "view"]
    [fused] = [t for t in templates if t.kind == "fused"]
    mean = np.mean(views, axis=0)
    assert fused.custody_image_id is None
    assert np.allclose(embedding_from_bytes(fused.embedding), mean / np.linalg.norm(mean), atol=1e-6)
    held = {int(i) for i in runtime.holder.index.ids()}
    assert {t.id for t in templates} <= held, "every view and the fused template are in the index"
    # The subject is listed once per search, at its best template.
    probe = runtime.pipeline.analyse_bytes(lfw_path("Ricardo_Lagos", 3).read_bytes()).faces[0].embedding
    hits = runtime.searcher.search(probe[None, :], runtime.pipeline.pack_id)[0]
    assert [h.custody_reference for h in hits].count("MK-1") == 1 and hits[0].custody_reference == "MK-1"
    runtime.gallery.delete_subject(OPERATOR, int(front.subject_id or 0), "test")
    assert not {t.id for t in templates} & {int(i) for i in runtime.holder.index.ids()}


def test_a_new_index_factory_is_rebuilt_from_the_database_verified_and_kept_in_step(
    runtime: Runtime, database: str, data_dir: Path, settings: Settings, pipeline: FacePipeline
) -> None:
    queries = probe_matrix(pipeline)
    expected = top_lists(runtime, queries)
    runtime.gallery.save_index()
    graph = IndexSettings(factory="HNSW16", flat_below=0, compact_fraction=0.01)  # needs no training
    switched = Runtime.build(make_settings(data_dir, database, settings.cache_dir, index=graph), pipeline=pipeline)
    status = switched.holder.open_status
    assert status.startswith("rebuilt: index_stale: saved index is Flat, configured HNSW16"), status
    assert "found in their own top 10" in status
    assert switched.holder.index.factory == "HNSW16"
    assert [hits[0][0] for hits in top_lists(switched, queries)] == [name for name, _ in PROBES]

    # A subject deleted from a type that cannot delete in place: filtered at once, compacted behind.
    davis = switched.gallery.enrol(OPERATOR, "Gray_Davis", lfw_path("Gray_Davis", 1).read_bytes(), "gd1.jpg")
    assert davis.status == "enrolled"
    probe = main_face(pipeline.analyse_bytes(lfw_path("Gray_Davis", 2).read_bytes()).faces).embedding[None, :]
    assert top_lists(switched, probe)[0][0][0] == "Gray_Davis"
    switched.gallery.delete_subject(OPERATOR, int(davis.subject_id or 0), "test")
    assert "Gray_Davis" not in [name for name, _ in top_lists(switched, probe)[0]]
    rebuilder = switched.holder.rebuilder
    assert rebuilder is not None, "a removed entry past compact_fraction starts a rebuild"
    rebuilder.join(timeout=120)
    assert switched.holder.rebuild_status.startswith("rebuilt: index_compact"), switched.holder.rebuild_status
    assert switched.holder.index.removed_entries == 0
    assert "Gray_Davis" not in [name for name, _ in top_lists(switched, probe)[0]]
    switched.close()

    again = Runtime.build(make_settings(data_dir, database, settings.cache_dir, index=graph), pipeline=pipeline)
    assert again.holder.open_status == "loaded", again.holder.open_status
    again.close()
    exact = restart(runtime, database, data_dir, settings, pipeline)
    assert exact.holder.open_status.startswith("rebuilt: index_stale: saved index is HNSW16, configured Flat")
    assert top_lists(exact, queries) == expected
    exact.close()


def test_a_restart_reconciles_the_saved_index_from_the_change_log(
    runtime: Runtime, database: str, data_dir: Path, settings: Settings, pipeline: FacePipeline
) -> None:
    runtime.holder.refresh()  # other tests' runtimes changed the gallery since this one last searched
    runtime.gallery.save_index()
    saved_at = runtime.holder.version
    # A checkpoint of the whole gallery: these enrolments do not save the index.
    lazy = make_settings(data_dir, database, settings.cache_dir, index=IndexSettings(checkpoint_fraction=1.0))
    other = Runtime.build(lazy, pipeline=pipeline)
    assert other.holder.open_status == "loaded", other.holder.open_status
    enrolled = other.gallery.enrol(OPERATOR, "Naomi_Watts", lfw_path("Naomi_Watts", 1).read_bytes(), "nw1.jpg")
    assert enrolled.status == "enrolled"
    added = other.gallery.enrol(OPERATOR, "Naomi_Watts", lfw_path("Naomi_Watts", 2).read_bytes(), "nw2.jpg")
    assert added.status == "enrolled"  # a second view: a fused template too
    assert other.holder.unsaved == 3
    other.close()  # the index on disk is still the one saved at saved_at

    again = restart(runtime, database, data_dir, settings, pipeline)
    status = again.holder.open_status
    assert status.startswith(f"loaded, reconciled from gallery version {saved_at} to {saved_at + 2}:"), status
    assert status.endswith("3 templates added, 0 removed"), status  # two views and their fused template
    probe = main_face(pipeline.analyse_bytes(lfw_path("Naomi_Watts", 3).read_bytes()).faces).embedding[None, :]
    assert top_lists(again, probe)[0][0][0] == "Naomi_Watts"
    again.gallery.delete_subject(OPERATOR, int(enrolled.subject_id or 0), "test")
    # The default checkpoint (0.1% of the gallery, at least one change) saves a small gallery at once.
    assert again.holder.unsaved == 0
    assert read_manifest(again.settings.index_dir).gallery_version == again.holder.version == saved_at + 3
    assert "Naomi_Watts" not in [name for name, _ in top_lists(runtime, probe)[0]], "seen by the other process"
    again.close()
