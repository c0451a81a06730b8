"""One Settings object; environment variables use the ``RFR_`` prefix and ``__`` for sections.

Example: ``RFR_QUALITY__MIN_INTER_EYE_PX=24`` or ``RFR_RUNTIME__INTRA_OP_THREADS=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "rfr"


def default_models_dir() -> Path:
    """The project's ``models/`` folder beside the ``service`` package (editable install or checkout)."""
    return Path(__file__).resolve().parent.parent / "models"


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rfr"


class RuntimeSettings(BaseModel):
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    # One thread per session measured faster end to end on this 2-core machine (and far steadier
    # when the other core is busy): benchmarks/results/throughput_intra1.json.
    intra_op_threads: int = Field(default=1, ge=1, le=64)
    inter_op_threads: int = Field(default=1, ge=1, le=64)
    embed_batch_size: int = Field(default=32, ge=1, le=512)


class DetectionSettings(BaseModel):
    min_score: float = Field(default=0.6, ge=0.0, le=1.0)
    nms_iou: float = Field(default=0.3, ge=0.0, le=1.0)
    # Smallest face box side (original pixels) the tiling pass must still find in a large frame.
    min_face_px: int = Field(default=36, ge=8)
    # Border added around the frame, as a fraction of its long side, so a face filling it is found.
    pad_fraction: float = Field(default=0.25, ge=0.0, le=1.0)
    # Re-locate the detector's landmarks with the pack's landmark network, if it has one
    # (CenterFace for yunet_sface: +6.2 points rank-1 on CCTV-like stills for 1.22x the end-to-end
    # time: benchmarks/results/cctv_yunet_sface.md, throughput_levers.json).
    refine_landmarks: bool = True


class RecognitionSettings(BaseModel):
    # Embed each aligned face and its mirror image, and keep their normalised sum: +1.1-1.7 points
    # rank-1 on CCTV-like stills (benchmarks/results/cctv_yunet_sface.md) for 1.6x the end-to-end
    # time, which would take throughput below 3x the dlib peer's; off unless throughput allows.
    flip: bool = False


class QualitySettings(BaseModel):
    """The quality reasons a face is flagged with, and the gate: the reasons that stop its search.

    Every reason is kept with the face and shown beside its candidates. The gate stops only what
    makes a search worthless: on CCTV-like stills (benchmarks/cctv.py, "the quality gate") the true
    person's rank falls towards chance only below about 8 px between the eyes and beyond 35 degrees
    of pitch; small, blurred, turned or weakly detected faces still rank their person near the top.
    A custody image must be free of every reason (the enrolment gate), turned views aside.
    """

    min_inter_eye_px: float = Field(default=20.0, ge=0.0)
    min_det_score: float = Field(default=0.75, ge=0.0, le=1.0)
    min_sharpness: float = Field(default=40.0, ge=0.0, description="variance of the Laplacian, aligned crop")
    max_yaw_deg: float = Field(default=45.0, ge=0.0, le=90.0)
    max_pitch_deg: float = Field(default=35.0, ge=0.0, le=90.0)
    min_brightness: float = Field(default=40.0, ge=0.0, le=255.0)
    max_brightness: float = Field(default=215.0, ge=0.0, le=255.0)
    min_score: float = Field(default=0.35, ge=0.0, le=1.0)
    # The floors below which a search is worthless (reasons far_too_small and far_off_angle).
    search_min_inter_eye_px: float = Field(default=8.0, ge=0.0)
    search_max_pitch_deg: float = Field(default=35.0, ge=0.0, le=90.0)
    gate: list[str] = Field(
        default_factory=lambda: ["far_too_small", "far_off_angle"],
        description="reasons that stop a face's search unless the submission overrides it",
    )


class ImageSettings(BaseModel):
    """Limits on what one still, and one request, may cost (README, "Request memory")."""

    max_pixels: int = Field(default=50_000_000, ge=1, description="decompression-bomb guard")
    max_bytes: int = Field(default=25 * 1024 * 1024, ge=1, description="largest accepted upload")
    # A still with a longer side is decoded reduced by a whole factor (a JPEG by its decoder's draft
    # mode, without ever holding the full-size pixels) and analysed at that size; faces are still
    # reported in the still's own pixels. 4096 keeps a face of 72 px in an 8192 px still findable.
    work_max_side: int = Field(default=4096, ge=256, description="long side stills are analysed at")
    # Stills decoded (and, for a search, analysed) at once by the API's search and upload checks.
    max_concurrent_decodes: int = Field(default=2, ge=1, le=64)
    # The whole body of one request (every file of an upload together); more is refused with 413
    # (request_too_large) before anything is stored. Room for a clip at its limit and some stills.
    max_request_bytes: int = Field(default=1024 * 1024 * 1024, ge=1, description="largest accepted request body")


class VideoSettings(BaseModel):
    """Clips in a submission (service.video, service.services.video): limits, sampling, tracking, shots."""

    max_bytes: int = Field(default=512 * 1024 * 1024, ge=1, description="largest accepted clip")
    max_duration_s: float = Field(default=3600.0, gt=0, description="longest accepted clip, seconds")
    max_frame_pixels: int = Field(default=3840 * 2160, ge=1, description="largest accepted frame (width x height)")
    # Frames sampled per second of footage: ``sample_fps`` where no face was seen in the last
    # sample, ``dense_fps`` while faces are in view (1080p at 5 a second runs at about real time on
    # 2 cores: benchmarks/results/video_yunet_sface.md).
    sample_fps: float = Field(default=2.0, gt=0, le=60)
    dense_fps: float = Field(default=5.0, gt=0, le=60)
    # Smallest face box side (frame pixels) the detector must find in a clip's frame: decides
    # whether a large frame is also searched in tiles (benchmarks/video.py, throughput).
    min_face_px: int = Field(default=48, ge=8)
    segment_s: float = Field(default=10.0, gt=0, description="footage processed and stored per step")
    shots_per_track: int = Field(default=5, ge=1, le=50, description="best shots kept and searched per track")
    # Tracking (service.video.tracking): how long a lost face may be gone and still continue its
    # track, and the cosines at which two pieces of track are one person, or one track two.
    track_lost_s: float = Field(default=1.0, gt=0)
    track_min_iou: float = Field(default=0.1, ge=0.0, le=1.0)
    join_threshold: float = Field(default=0.5, ge=-1.0, le=1.0)
    join_gap_s: float = Field(default=3.0, ge=0)
    split_threshold: float = Field(default=0.35, ge=-1.0, le=1.0)


class SearchSettings(BaseModel):
    top_k: int = Field(default=20, ge=1, le=200, description="candidates per face")
    # Over-fetch from the index so a subject with several templates still leaves k distinct subjects.
    oversample: int = Field(default=4, ge=1, le=50)


class PersonSettings(BaseModel):
    """Persons within an incident (service.domain.persons); calibrated by benchmarks/cctv.py."""

    fusion: str = Field(default="hybrid", pattern="^(max|wmean|hybrid)$", description="max | wmean | hybrid")
    group_threshold: float = Field(
        default=0.35, ge=-1.0, le=1.0, description="average cosine at which two faces of an incident are one person"
    )


class IndexSettings(BaseModel):
    """The gallery index (service.index): its FAISS type, search parameters, training and upkeep.

    ``factory`` is a FAISS ``index_factory`` string over inner product: ``Flat`` (exact, the
    default), an inverted file (``IVF65536,SQ8``, ``IVF16384_HNSW32,PQ32x4fs``, optionally with a
    refine step such as ``IVF16384_HNSW32,PQ32x4fs,Refine(SQ8)``) or a graph (``HNSW32,SQ8``).
    Below ``flat_below`` templates the gallery stays exact whatever ``factory`` says. Changing any of
    these takes effect at the next start: the saved index is rebuilt from the database and verified.
    """

    factory: str = Field(default="Flat", min_length=1, max_length=200, description="FAISS index_factory string")
    # Below this many templates an exact flat index is kept whatever ``factory`` says: it needs no
    # training, and a flat probe is under the latency target there (benchmarks/index_scale.py).
    flat_below: int = Field(default=1_000_000, ge=0)
    nprobe: int = Field(default=64, ge=1, le=65536, description="inverted lists visited per probe (IVF)")
    ef_search: int = Field(default=128, ge=1, le=65536, description="HNSW search breadth (graph or coarse quantiser)")
    refine_k_factor: float = Field(default=4.0, ge=1.0, le=100.0, description="candidates re-scored per result")
    # Training sample (IVF, SQ, PQ): 0 picks max(64 per inverted list, 65,536), at most the gallery.
    train_sample: int = Field(default=0, ge=0)
    train_iterations: int = Field(default=10, ge=1, le=100, description="k-means iterations of the coarse quantiser")
    # Retrain (rebuild from the database) once the gallery is this many times what it was trained on.
    retrain_growth: float = Field(default=4.0, gt=1.0)
    # Compact (rebuild) a type that cannot delete in place once this fraction of its entries is removed.
    compact_fraction: float = Field(default=0.1, gt=0.0, le=1.0)
    # The index is saved once the template changes since its last save reach this fraction of the
    # gallery (at least one change), after a rebuild, and when a worker stops; a restart brings the
    # saved index up to date from the database's change log. A save costs time in proportion to the
    # gallery (17 s at 20M), so saving on every change would stall a national gallery's enrolment.
    checkpoint_fraction: float = Field(default=0.001, ge=0.0, le=1.0)
    # Open a saved inverted-file index memory-mapped, read-only: the pages are the operating
    # system's file cache (shared by every process on the host that opens the same file) and are
    # read on demand; changes since go to a small in-memory layer, merged into the file at a save.
    mmap: bool = True
    # After a rebuild, this many sampled templates are searched for themselves; at least
    # ``verify_min_recall`` of them must come back in their own top 10, or the index is refused.
    verify_sample: int = Field(default=1000, ge=0)
    verify_min_recall: float = Field(default=0.95, ge=0.0, le=1.0)


class WorkerSettings(BaseModel):
    enabled: bool = True
    lease_seconds: float = Field(default=120.0, gt=0)
    poll_seconds: float = Field(default=0.5, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    batch_size: int = Field(default=8, ge=1, le=256, description="stills leased together and stored in one transaction")


class RetentionSettings(BaseModel):
    days: float = Field(default=31.0, ge=1, description="unconfirmed probes are purged after this many days")
    purge_interval_hours: float = Field(default=6.0, gt=0, description="how often the service runs the purge")
    enabled: bool = True


class AuthSettings(BaseModel):
    session_hours: float = Field(default=12.0, gt=0, le=24 * 7)
    cookie_secure: bool | None = Field(
        default=None,
        description="session cookies marked Secure; unset: always, except plain HTTP to a loopback address",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="other origins (scheme://host[:port]) whose pages may write to the service, e.g. a proxy's name",
    )


class LinkingSettings(BaseModel):
    """Linking unknown faces across submissions (service.domain.linking). Calibrated for yunet_sface
    with benchmarks/linking.py (LFW: pairwise precision 0.9998, recall 0.97); re-run it for another pack."""

    enabled: bool = True
    threshold: float = Field(default=0.55, ge=-1.0, le=1.0, description="average cosine to a group's members")
    nearest: float = Field(default=0.55, ge=-1.0, le=1.0, description="cosine to the most similar member")
    margin: float = Field(default=0.05, ge=0.0, le=2.0, description="lead over a second qualifying group")
    merge_threshold: float = Field(default=0.65, ge=-1.0, le=2.0, description="automatic merge of two groups")


class StoreSettings(BaseModel):
    """Where stills and clips are stored (service.db.image_store).

    Unset, ``<data_dir>/images``: a folder of this host (``LocalImageStore``). Set, a folder every
    host of a multi-host deployment mounts at this same path (``SharedImageStore``: per-host staging,
    no host-local locks; README, "Multi-host deployment")."""

    path: Path | None = Field(default=None, description="a shared folder for the images; default <data_dir>/images")


class AuditSettings(BaseModel):
    """Where the audit trail's anchor lives, outside the database (service.services.audit_anchor).

    The key MACs every event and checkpoint; the checkpoint file records, after each commit, how
    long the trail was and its last hash. Default both under ``<data_dir>/keys``; in production put
    them on another volume than the database (the checkpoint file append-only, ``chattr +a``) and
    give the auditor a copy of the key.
    """

    key_file: Path | None = Field(default=None, description="default <data_dir>/keys/audit.key")
    checkpoint_file: Path | None = Field(default=None, description="default <data_dir>/keys/audit-checkpoints.jsonl")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RFR_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    models_dir: Path = Field(default_factory=default_models_dir)
    cache_dir: Path = Field(default_factory=default_cache_dir)
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir")
    pack: str = "yunet_sface"
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    detection: DetectionSettings = Field(default_factory=DetectionSettings)
    recognition: RecognitionSettings = Field(default_factory=RecognitionSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    images: ImageSettings = Field(default_factory=ImageSettings)
    video: VideoSettings = Field(default_factory=VideoSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    persons: PersonSettings = Field(default_factory=PersonSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    linking: LinkingSettings = Field(default_factory=LinkingSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    host: str = "127.0.0.1"
    port: int = 8700

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'rfr.db'}"

    @property
    def images_dir(self) -> Path:
        return self.store.path or self.data_dir / "images"

    @property
    def audit_key_file(self) -> Path:
        return self.audit.key_file or self.data_dir / "keys" / "audit.key"

    @property
    def audit_checkpoint_file(self) -> Path:
        return self.audit.checkpoint_file or self.data_dir / "keys" / "audit-checkpoints.jsonl"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index" / self.pack
