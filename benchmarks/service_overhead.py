"""Issue 3 service figures: a sprint through the running service against the bare pipeline, and
the enrolment rate of a custody gallery.

1. Enrols a gallery (one image per person) with the same code path as ``rfr gallery import``
   and reports images/s (``--gallery all`` enrols every LFW person: 5,749 images).
2. Runs ``--probes`` LFW stills (default 400) through the bare pipeline in this process
   (decode, detect, quality, align, embed, search) and reports images/s.
3. Starts ``rfr serve`` on loopback on that data directory, creates an analyst token with
   ``rfr users create``, submits the same stills over HTTP as one sprint (multipart uploads of
   50), waits for ``complete`` and reports images/s from the first upload to completion; the
   service's cost is ``1 - service / bare``.

    python -m benchmarks.service_overhead --gallery all --probes 400
    python -m benchmarks.service_overhead --gallery all --probes 400 \
        --database-url postgresql+psycopg://rfr:rfr@127.0.0.1:5432/rfr_bench   # an empty database
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import DEFAULT_LFW_ROOT, default_out, peak_rss_mib, stamp, write_json
from benchmarks.harness import ApiClient, Service, obtain_token, rfr_command, service_env, upload_images, wait_complete
from service.config import Settings, WorkerSettings
from service.domain.roles import operator_principal
from service.runtime import Runtime


def people(root: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "protocol"):
        images = sorted(folder.glob("*.jpg"))
        if images:
            out[folder.name] = images
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW_ROOT)
    parser.add_argument("--gallery", default="probed", help="'all' (every person) or 'probed' (probe people only)")
    parser.add_argument("--probes", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", help="an empty database (default: SQLite in a new data directory)")
    parser.add_argument("--out", type=Path, default=default_out("service_overhead"))
    args = parser.parse_args()

    rng = random.Random(args.seed)
    everyone = people(args.lfw)
    several = [name for name, images in everyone.items() if len(images) >= 2]
    probe_pool = [(name, path) for name in several for path in everyone[name][1:]]
    probes = rng.sample(probe_pool, min(args.probes, len(probe_pool)))
    gallery_names = sorted(everyone) if args.gallery == "all" else sorted({n for n, _ in probes})

    data_dir = Path(tempfile.mkdtemp(prefix="rfr-bench-"))
    settings = Settings(data_dir=data_dir, database_url=args.database_url, worker=WorkerSettings(enabled=False))
    runtime = Runtime.build(settings)
    operator = operator_principal()

    # 1. Enrolment rate (the code path of `rfr gallery import`).
    started = time.perf_counter()
    outcomes: dict[str, int] = {}
    for i, name in enumerate(gallery_names):
        image = everyone[name][0]
        outcome = runtime.gallery.enrol(operator, name, image.read_bytes(), image.name)
        outcomes[outcome.status] = outcomes.get(outcome.status, 0) + 1
        if i % 500 == 499:
            print(f"  enrolled {i + 1}/{len(gallery_names)}", file=sys.stderr)
    runtime.gallery.save_index()
    enrol_seconds = time.perf_counter() - started

    # 2. The bare pipeline on the probes, with the same search the service does.
    datas = [path.read_bytes() for _, path in probes]
    for data in datas[:5]:  # warm up
        runtime.pipeline.analyse_bytes(data)
    started = time.perf_counter()
    faces = 0
    for data in datas:
        found = runtime.pipeline.analyse_bytes(data).faces
        usable = [f.embedding for f in found if f.quality.usable]
        faces += len(found)
        if usable:
            runtime.searcher.search(np.stack(usable), runtime.pipeline.pack_id)
    bare_seconds = time.perf_counter() - started
    runtime.close()

    # 3. The same stills through the running service, over HTTP.
    env = service_env(data_dir, database_url=args.database_url, settings={"RFR_WORKER__POLL_SECONDS": "0.05"})
    service = Service(rfr_command(), data_dir, env)
    token, auth_note = obtain_token(service, "bench-analyst")
    if token is None:
        raise SystemExit(auth_note)
    with service.serve() as (url, server):
        client = ApiClient(url, token, timeout=120)
        try:
            client.wait_healthy(120, server)
            body = {"case_reference": "BENCH", "purpose": "service overhead"}
            sid = int(client.post_json("/submissions", body)["id"])
            files = [(path.name, data, "image/jpeg") for (_, path), data in zip(probes, datas, strict=True)]
            started = time.perf_counter()
            upload_images(client, sid, files, chunk=50)
            wait_complete(client, sid, poll_s=0.1)
            service_seconds = time.perf_counter() - started
            results = client.get(f"/submissions/{sid}/results")
        finally:
            client.close()
    service_faces = sum(len(image["faces"]) for image in results["images"])

    n = len(probes)
    report: dict[str, Any] = {
        **stamp(runtime.pipeline.pack_id),
        "database": runtime.engine.url.get_backend_name(),
        "worker_batch_size": settings.worker.batch_size,
        "gallery": {
            "images": len(gallery_names),
            "outcomes": outcomes,
            "seconds": round(enrol_seconds, 2),
            "images_per_s": round(len(gallery_names) / enrol_seconds, 2),
        },
        "probes": n,
        "bare_pipeline": {
            "seconds": round(bare_seconds, 2),
            "images_per_s": round(n / bare_seconds, 2),
            "faces": faces,
        },
        "service": {
            "seconds": round(service_seconds, 2),
            "images_per_s": round(n / service_seconds, 2),
            "faces": service_faces,
        },
        "service_cost_fraction": round(1 - (n / service_seconds) / (n / bare_seconds), 4),
        "peak_rss_mib_bench_process": round(peak_rss_mib(), 1),
    }
    write_json(args.out, report)
    print(
        json.dumps({k: report[k] for k in ("gallery", "bare_pipeline", "service", "service_cost_fraction")}, indent=2)
    )


if __name__ == "__main__":
    main()
