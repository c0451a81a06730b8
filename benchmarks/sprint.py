"""Sprint benchmark: a whole retail sprint through the real service, clean and CCTV-degraded, with the peer.

What it does, end to end:

1. Splits a folder of identity folders (default ``../shared/datasets/lfw``) with a seed: one image
   per person (the first) in the custody gallery, except a held-out set of people; mated probes
   are other images of enrolled people (one per person, then a second round...), non-mated probes
   are images of held-out people.
2. Enrols the gallery with ``rfr gallery import --manifest`` into a fresh data directory, creates an
   analyst token with ``rfr users create ... --token --json`` when that command exists, and starts
   ``rfr serve`` on a free loopback port with ``RFR_SEARCH__TOP_K=50`` (NIST's investigation mode).
3. For each condition (``--degrade``: ``clean`` and CCTV-like levels, see ``benchmarks/degrade.py``)
   submits the probes as one submission over HTTP (``POST /submissions``, chunks of
   ``POST /submissions/{id}/images``), waits for ``status == "complete"`` and reads
   ``GET /submissions/{id}/results``. Images/s is measured from the first upload to completion.
4. Runs the peer (dlib HOG + ResNet, ``benchmarks/dlib_peer.py``) on the same gallery and the same
   degraded bytes (a subsample of the probes: it is slow), searched with FAISS.
5. Writes JSON + Markdown + PNG (CMC, DET) under ``benchmarks/results/``.

The probe face: LFW stills can show several people. The named person's face is the detected face
nearest to where it should be (the image centre for LFW, moved by any crop, rotation or
rescaling the degradation applied), and only if that point lies inside the face's box enlarged
1.5 times; otherwise the named person was not found (another face does not count, either way).

Where the parts are: this module has the command line, the gallery enrolment and the service
conditions; ``benchmarks/harness.py`` runs ``rfr`` and talks HTTP to it; ``benchmarks/sprint_probes.py``
prepares each condition's probes; ``benchmarks/sprint_peer.py`` is the dlib peer; and
``benchmarks/sprint_report.py`` writes the Markdown and the plots.

Run ``python -m benchmarks.sprint --help``; a default run takes about 20 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import degrade as deg
from benchmarks.common import DEFAULT_LFW_ROOT, RESULTS_DIR, peak_rss_mib, stamp, write_json
from benchmarks.harness import (
    ApiClient,
    ApiError,
    Service,
    mime_of,
    obtain_token,
    rfr_command,
    service_env,
    upload_images,
    wait_complete,
)
from benchmarks.identification import (
    Outcome,
    by_group,
    list_identities,
    make_split,
    mated_probes,
    pick_probe_face,
    read_labels,
    summarise,
)
from benchmarks.sprint_peer import PEER_THRESHOLD, Descriptors, PeerStore, peer_descriptors_job, peer_units, run_peer
from benchmarks.sprint_persons import build_incidents, run_incidents
from benchmarks.sprint_probes import TOP_K, Prepared, log, prepare_condition, timing_text
from benchmarks.sprint_report import markdown, plot, render

MET_SPRINT = {"supplied": 401, "usable": 302, "identifications": 149}

# -- enrolment ------------------------------------------------------------------------------------


def _import_round(
    service: Service, batch: dict[str, Path] | list[tuple[str, Path, str]], root: Path, manifest: Path
) -> dict[str, Any]:
    """One ``rfr gallery import --manifest``: ``{person: image}`` (front views) or (person, image, view) rows."""
    rows = [(p, path, "") for p, path in batch.items()] if isinstance(batch, dict) else batch
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "custody_reference", "view", "source", "lawful_basis", "conviction_status"])
        for person, path, view in rows:
            writer.writerow(
                [str(path), person, view, f"benchmark: {root.name}", "benchmark (public dataset)", "unknown"]
            )
    cmd = service.command("gallery", "import", "--manifest", str(manifest))
    # stdout (the JSON summary) is parsed; stderr (the progress bar) shows on ours.
    done = subprocess.run([*cmd, "--json"], env=service.env, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"rfr gallery import failed with status {done.returncode}: {done.stdout[-2000:]}")
    for line in reversed(done.stdout.strip().splitlines()):
        try:
            summary: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            continue
        return summary
    raise SystemExit("rfr gallery import --json printed no summary")


def enrol_gallery(
    service: Service, people: dict[str, list[Path]], gallery_people: list[str], root: Path, work: Path, attempts: int
) -> tuple[dict[str, Any], dict[str, Path]]:
    """``rfr gallery import --manifest`` of each person's first image; a rejected person's next image is
    tried in a further round (up to ``attempts`` images), as a custody suite would re-take a photograph.

    Returns the enrolment summary and ``{person: enrolled image}``.
    """
    next_image = dict.fromkeys(gallery_people, 0)
    enrolled: dict[str, Path] = {}
    rounds = []
    first_reasons: dict[str, int] = {}
    started = time.perf_counter()
    for attempt in range(attempts):
        batch = {p: people[p][i] for p, i in next_image.items() if i < len(people[p])}
        if not batch:
            break
        t0 = time.perf_counter()
        summary = _import_round(service, batch, root, work / f"gallery-{attempt + 1}.csv")
        rejected = {item.get("custody_reference", ""): item.get("code", "?") for item in summary["rejected_images"]}
        for person, path in batch.items():
            if person not in rejected:
                enrolled[person] = path
        if attempt == 0:
            for code in rejected.values():
                first_reasons[code] = first_reasons.get(code, 0) + 1
        next_image = {p: next_image[p] + 1 for p in rejected if p in next_image}
        rounds.append({"images": len(batch), "rejected": len(rejected), "seconds": round(time.perf_counter() - t0, 1)})
        log(f"enrolment round {attempt + 1}: {len(batch)} images, {len(rejected)} rejected")
    seconds = time.perf_counter() - started
    images = sum(r["images"] for r in rounds)
    info = {
        "people": len(gallery_people),
        "enrolled": len(enrolled),
        "not_enrolled": len(gallery_people) - len(enrolled),
        "first_image_rejected": sum(first_reasons.values()),
        "first_image_rejected_reasons": first_reasons,
        "rounds": rounds,
        "images_tried": images,
        "seconds": round(seconds, 1),
        "images_per_s": round(images / seconds, 2) if seconds else None,
    }
    return info, enrolled


TURNED_YAW_DEG = 15.0  # as benchmarks/cctv.py: a view this far from the front one counts as turned


def choose_views(
    people: dict[str, list[Path]], enrolled: dict[str, Path], candidates: int = 8
) -> list[tuple[str, Path, str]]:
    """Turned views for each enrolled person with four images or more: of up to ``candidates`` other
    images, the most turned on each side (yaw read from the landmarks, at least 15 degrees from the
    enrolled front view's) whose face the enrolment gate would take as a view."""
    from benchmarks.common import build_pipeline
    from service.services.gallery import choose_custody_face

    pipeline = build_pipeline()

    def yaw_of(path: Path) -> float | None:
        faces = pipeline.analyse_bytes(path.read_bytes()).faces
        choice = choose_custody_face(faces, turned_ok=True)
        return None if isinstance(choice, tuple) else float(choice.quality.measures["yaw_deg"])

    views: list[tuple[str, Path, str]] = []
    for person, front in enrolled.items():
        others = [p for p in people[person] if p != front]
        if len(people[person]) < 4:
            continue
        front_yaw = yaw_of(front)
        if front_yaw is None:
            continue
        read = [(p, y) for p in others[:candidates] if (y := yaw_of(p)) is not None]
        left = [(p, y) for p, y in read if y <= front_yaw - TURNED_YAW_DEG]
        right = [(p, y) for p, y in read if y >= front_yaw + TURNED_YAW_DEG]
        if left:
            views.append((person, min(left, key=lambda t: t[1])[0], "left"))
        if right:
            views.append((person, max(right, key=lambda t: t[1])[0], "right"))
    return views


# -- the service conditions ------------------------------------------------------------------------


def gated(o: Outcome) -> Outcome:
    """The outcome as the quality gate would leave it: a poor face is kept but not searched."""
    if o.usable:
        return o
    return replace(o, searched=False, candidates=[])


def run_service_condition(
    client: ApiClient, cond: Prepared, index: int, chunk: int, search_poor: bool, poll_s: float
) -> tuple[list[Outcome], dict[str, Any]]:
    """One submission per condition; returns per-probe outcomes and timings."""
    created = client.post_json(
        "/submissions",
        {
            "case_reference": f"BENCH/{index:02d}/{cond.name}"[:128],
            "purpose": "accuracy benchmark on public data (benchmarks/sprint.py)",
            "submitted_by": "sprint-benchmark",
            "search_poor_faces": search_poor,
        },
    )
    sid = int(created["id"])
    started = time.perf_counter()
    files = []
    for i, data in enumerate(cond.data):
        suffix, mime = mime_of(data)
        files.append((f"probe-{i:05d}{suffix}", data, mime))  # no identity in the name
    image_ids = upload_images(client, sid, files, chunk, {"retailer": "benchmark"})
    image_probe = {image_id: i for i, image_id in enumerate(image_ids)}
    uploaded = time.perf_counter() - started
    status = wait_complete(client, sid, poll_s)
    seconds = time.perf_counter() - started
    results = client.get(f"/submissions/{sid}/results")
    read_s = time.perf_counter() - started - seconds
    outcomes: list[Outcome | None] = [None] * len(cond.probes)
    top_k_seen = 0
    threshold: float | None = None
    for image in results["images"]:
        found_i = image_probe.get(int(image["id"]))
        if found_i is None:
            continue
        i = found_i
        probe = cond.probes[i]
        o = Outcome(probe.key, probe.person, probe.mated)
        faces = image.get("faces") or []
        o.faces = len(faces)
        if image.get("error"):
            o.error = f"{image['error'].get('code')}: {image['error'].get('message')}"
        pick = pick_probe_face([f["box"] for f in faces], cond.expected[i])
        if pick is not None:
            face = faces[pick]
            o.found = True
            o.usable = bool(face["quality"]["usable"])
            o.searched = bool(face["searched"])
            o.reasons = list(face["quality"]["reasons"])
            o.candidates = [(c["custody_reference"], float(c["score"])) for c in face["candidates"]]
            top_k_seen = max(top_k_seen, len(o.candidates))
            if face.get("threshold") is not None:
                threshold = float(face["threshold"])
        outcomes[i] = o
    missing = [cond.probes[i].key for i, o in enumerate(outcomes) if o is None]
    if missing:
        raise ApiError(f"submission {sid}: {len(missing)} probes missing from the results, e.g. {missing[:3]}")
    timing = {
        "submission_id": sid,
        "images": len(cond.probes),
        "upload_s": round(uploaded, 2),
        "end_to_end_s": round(seconds, 2),
        "images_per_s": round(len(cond.probes) / seconds, 3),
        "results_read_s": round(read_s, 2),
        "progress": status.get("progress"),
        "top_k_seen": top_k_seen,
        "threshold": threshold,
    }
    return [o for o in outcomes if o is not None], timing


# -- main ------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--dataset", type=Path, default=DEFAULT_LFW_ROOT, help="folder of identity folders")
    p.add_argument("--seed", type=int, default=20231001)
    p.add_argument("--held-out", type=int, default=200, help="people kept out of the gallery (non-mated)")
    p.add_argument(
        "--gallery-size", type=int, default=2000, help="enrol this many people (0: all but the held-out, 5,549 on LFW)"
    )
    p.add_argument("--mated", type=int, default=200, help="mated probes per condition")
    p.add_argument("--nonmated", type=int, default=200, help="non-mated probes per condition")
    p.add_argument(
        "--degrade",
        default="clean,mild,moderate,cctv,severe",
        help="comma-separated conditions: presets (clean, mild, moderate, cctv, severe) or degrade.py chains",
    )
    p.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True, help="also run the dlib peer")
    p.add_argument(
        "--peer-mated", type=int, default=100, help="mated probes per condition for the peer (a prefix of ours)"
    )
    p.add_argument("--peer-nonmated", type=int, default=100, help="non-mated probes per condition for the peer")
    p.add_argument(
        "--labels",
        type=Path,
        help="CSV name,<label>,... per person, or LFW's name<TAB>image<TAB>sex, for the fairness breakdown (R5); "
        "default <dataset>/protocol/lfw-sex.tsv when it exists",
    )
    p.add_argument("--thresholds", default="", help="extra rfr thresholds (comma-separated) to recompute metrics at")
    p.add_argument(
        "--search-poor-faces", action="store_true", help="report with the poor-face override on (R9), not the gate"
    )
    p.add_argument(
        "--gate-analysis",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="submit with search_poor_faces so poor faces are searched too (recorded per face), then report the "
        "operational figures with the gate's verdict applied and, beside them, what searching every face would give",
    )
    p.add_argument("--chunk", type=int, default=25, help="files per upload request")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between progress polls")
    p.add_argument("--work-dir", type=Path, help="where the fresh data directory goes (default: a temporary folder)")
    p.add_argument(
        "--keep-data-dir", action="store_true", help="keep the data directory (e.g. for calibrate.py --data-dir)"
    )
    p.add_argument("--rfr", help="command that runs the CLI (default: this Python's `-m service.cli`)")
    p.add_argument("--service-src", help="put this source tree first on PYTHONPATH for the service processes")
    p.add_argument(
        "--out", type=Path, default=RESULTS_DIR / "sprint", help="output prefix (.json, .md, _cmc.png, _det.png)"
    )
    p.add_argument("--no-peer-cache", action="store_true", help="recompute the peer's gallery descriptors")
    p.add_argument("--render", type=Path, help="only re-write the Markdown and plots of this results JSON")
    p.add_argument("--enrol-attempts", type=int, default=3, help="images tried per gallery person until one enrols")
    p.add_argument(
        "--views",
        choices=["none", "exclude", "enrol"],
        default="none",
        help="turned views (by the landmarks' yaw) of people with four images or more: 'enrol' them beside the "
        "front view, or only 'exclude' them from the probes (the one-view baseline on the same probes); the "
        "peer enrols the front view only, so run these with --no-peer",
    )
    p.add_argument(
        "--incidents",
        type=int,
        default=90,
        help="incidents of 3-6 stills per degraded condition (two thirds of enrolled people), searched as persons",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.render:
        return render(args.render)
    wall0 = time.perf_counter()
    root = args.dataset.resolve()
    people = list_identities(root)
    split = make_split(root, people, args.seed, args.held_out, args.gallery_size or None, args.nonmated)
    log(f"{len(people)} people; gallery {len(split.gallery_people)}, held out {len(split.held_out)}")
    conditions = [c.strip() for c in args.degrade.split(",") if c.strip()]
    for c in conditions:
        deg.parse_condition(c)  # fail early on a typo
    extra = [float(t) for t in args.thresholds.split(",") if t.strip()]
    labels_file = args.labels or root / "protocol" / "lfw-sex.tsv"
    labels = read_labels(labels_file) if args.labels or labels_file.is_file() else None

    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rfr-sprint-", dir=args.work_dir))
    data_dir = work / "data"
    env = service_env(data_dir, service_src=args.service_src, settings={"RFR_SEARCH__TOP_K": str(TOP_K)})
    service = Service(rfr_command(args.rfr), data_dir, env)
    notes = list(split.notes)

    # The peer's gallery descriptors (each person's first image; cached per file) are computed in a
    # child process while rfr enrols; the timed part starts only once both are done.
    store = PeerStore.for_this_peer() if args.peer else None
    if store is not None and args.no_peer_cache:
        store.rows.clear()
    pool: concurrent.futures.ProcessPoolExecutor | None = None
    peer_future: concurrent.futures.Future[Descriptors] | None = None
    peer_first: list[str] = []
    if store is not None:
        peer_first = store.missing([people[p][0] for p in split.gallery_people])
        if peer_first:
            pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            peer_future = pool.submit(peer_descriptors_job, peer_first)
            log(f"peer: describing {len(peer_first)} gallery images in a child process")

    results: list[dict[str, Any]] = []
    outcomes_by: dict[tuple[str, str], list[Outcome]] = {}
    persons_out: dict[str, dict[str, Any]] = {}
    health: dict[str, Any] = {}
    rfr_threshold: float | None = None
    peer_info: dict[str, Any] | None = None
    try:
        log(f"enrolling {len(split.gallery_people)} people with rfr gallery import into {data_dir}")
        gallery_info, enrolled = enrol_gallery(service, people, split.gallery_people, root, work, args.enrol_attempts)
        if gallery_info["not_enrolled"]:
            notes.append(
                f"{gallery_info['not_enrolled']} gallery people had no image rfr would enrol: they are neither in "
                "the gallery nor probed"
            )
        if args.views != "none":
            views = choose_views(people, enrolled)
            gallery_info["views"] = {"mode": args.views, "chosen": len(views), "people": len({p for p, _, _ in views})}
            if args.views == "enrol":
                summary = _import_round(service, views, root, work / "gallery-views.csv")
                gallery_info["views"] |= {"enrolled": summary["enrolled"], "rejected": summary["rejected"]}
            notes.append(f"turned views: {gallery_info['views']} (never probed)")
            log(f"turned views: {gallery_info['views']}")
            taken = {path for _, path, _ in views}
            people = {p: [x for x in imgs if x not in taken] for p, imgs in people.items()}  # never probed
        mated, _ = mated_probes(root, people, enrolled, args.mated, args.seed)
        probes = mated + split.nonmated
        log(f"gallery {len(enrolled)} enrolled; {len(mated)} mated / {len(split.nonmated)} non-mated probes")
        token, auth_note = obtain_token(service)
        log(auth_note)

        if store is not None:
            if peer_future is not None:
                log("waiting for the peer's gallery descriptors")
                store.add(peer_first, *peer_future.result())
            substitutes = store.missing(list(enrolled.values()))
            if substitutes:
                store.add(substitutes, *peer_descriptors_job(substitutes))
            store.save()

        prepared = []
        for c in conditions:
            cond = prepare_condition(c, probes, args.seed)
            prepared.append(cond)
            log(f"prepared {c}: {len(cond.data)} probes in {cond.seconds:.1f} s")

        with service.serve(work / "serve.log") as (url, proc):
            client = ApiClient(url, token)
            try:
                health = client.wait_healthy(300.0, proc)
                log(f"rfr serve healthy at {url}: {health}")
                for i, cond in enumerate(prepared):
                    override = args.search_poor_faces or args.gate_analysis
                    outcomes, timing = run_service_condition(client, cond, i, args.chunk, override, args.poll)
                    if args.gate_analysis and not args.search_poor_faces:
                        outcomes_by[("rfr_nogate", cond.name)] = outcomes
                        outcomes = [gated(o) for o in outcomes]
                    if timing["threshold"] is not None:
                        rfr_threshold = timing["threshold"]
                    outcomes_by[("rfr", cond.name)] = outcomes
                    results.append({"name": cond.name, "description": cond.description, "rfr_timing": timing})
                    log(f"rfr {cond.name}: {timing_text(timing)}")
                    if 0 < timing["top_k_seen"] < TOP_K < len(enrolled):
                        notes.append(f"{cond.name}: the service returned at most {timing['top_k_seen']} candidates")
                if args.incidents:
                    incidents = build_incidents(people, enrolled, split.held_out, args.incidents, args.seed)
                    for i, cond in enumerate(prepared):
                        if cond.name == "clean":
                            continue
                        persons_out[cond.name] = run_incidents(
                            client, cond.name, incidents, i, args.seed, args.chunk, args.poll, args.search_poor_faces
                        )
                        log(f"rfr {cond.name} incidents: {persons_out[cond.name]}")
            finally:
                client.close()

        if store is not None:
            peer_info = run_peer(
                store,
                enrolled,
                prepared,
                results,
                outcomes_by,
                len(mated),
                peer_mated=args.peer_mated,
                peer_nonmated=args.peer_nonmated,
                cached=not args.no_peer_cache,
            )
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if not args.keep_data_dir:
            shutil.rmtree(work, ignore_errors=True)

    if rfr_threshold is None:
        from service.config import Settings
        from service.embeddings.packs import load_manifest

        settings = Settings()
        rfr_threshold = float(load_manifest(settings.models_dir, settings.pack).operating_threshold)
        notes.append("no searched face reported its threshold; used the pack manifest's")

    conditions_out = summarise_all(results, outcomes_by, rfr_threshold, extra, labels)
    probe_rates = [e["rfr_timing"]["images_per_s"] for e in results]
    full = None
    if gallery_info.get("images_per_s") and probe_rates:
        # The whole dataset: every person but the held-out enrolled, every other image probed.
        held = set(split.held_out)
        gallery_all = len(people) - len(held)
        mated_all = sum(len(v) - 1 for k, v in people.items() if k not in held)
        nonmated_all = sum(len(people[k]) for k in held)
        rate = float(np.mean(probe_rates))
        hours = (
            gallery_all / gallery_info["images_per_s"] + len(conditions) * (mated_all + nonmated_all) / rate
        ) / 3600
        full = (
            f"A full run (gallery of all {gallery_all} people not held out, all {mated_all} mated and {nonmated_all} "
            f"non-mated images, {len(conditions)} conditions) would take about {hours:.1f} h for rfr at this run's "
            f"rates ({gallery_info['images_per_s']} enrolments/s, {rate:.1f} probe images/s)"
        )
        if peer_info and peer_info.get("images_per_s") and peer_info.get("gallery_seconds_per_image"):
            peer_hours = (
                gallery_all * peer_info["gallery_seconds_per_image"]
                + len(conditions) * (mated_all + nonmated_all) / peer_info["images_per_s"]
            ) / 3600
            full += f", plus about {peer_hours:.1f} h for the peer"
        full += "."
    payload: dict[str, Any] = {
        "stamp": stamp(str(health.get("pack_id", "unknown")), benchmark="sprint", load_average_1_5_15=os.getloadavg()),
        "config": {
            "dataset": str(root),
            "seed": args.seed,
            "gallery_people": len(enrolled),
            "turned_views": args.views,
            "held_out_people": len(split.held_out),
            "mated": len(mated),
            "nonmated": len(split.nonmated),
            "conditions": conditions,
            "top_k": TOP_K,
            "search_poor_faces": args.search_poor_faces,
            "gate_analysis": args.gate_analysis and not args.search_poor_faces,
            "extra_thresholds": extra,
            "probe_face_rule": "the detected face nearest the named face's expected centre (the image centre, moved "
            "by the degradation's crop, rotation or rescaling), if that point lies inside the face box enlarged 1.5x",
            "gallery_image_rule": f"each person's first image (file-name order) that rfr accepts, up to "
            f"{args.enrol_attempts} tried; the peer enrols the same image",
        },
        "rfr_threshold": rfr_threshold,
        "peer_threshold_euclidean": PEER_THRESHOLD,
        "met_sprint": MET_SPRINT,
        "setup": {
            "gallery": gallery_info,
            "auth": auth_note,
            "health": health,
            "peer": peer_info,
            "wall_s": time.perf_counter() - wall0,
            "peak_rss_mib": peak_rss_mib(),
            "full_run_estimate": full,
        },
        "conditions": conditions_out,
        "persons": persons_out,
        "fairness": {"labels_file": labels[0]} if labels else None,
        "notes": notes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload["plots"] = plot(payload, args.out)
    write_json(args.out.with_suffix(".json"), payload)
    args.out.with_suffix(".md").write_text(markdown(payload), encoding="utf-8")
    if args.keep_data_dir:
        log(f"data directory kept at {data_dir}")
    log(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    sys.stdout.write(markdown(payload))
    return 0


def summarise_all(
    results: list[dict[str, Any]],
    outcomes_by: dict[tuple[str, str], list[Outcome]],
    rfr_threshold: float,
    extra: list[float],
    labels: tuple[str, dict[str, dict[str, str]]] | None,
) -> list[dict[str, Any]]:
    thresholds = {"rfr": rfr_threshold, "peer": -PEER_THRESHOLD}
    out = []
    for entry in results:
        systems: dict[str, Any] = {}
        fairness: dict[str, Any] = {}
        for system in ("rfr", "rfr_nogate", "peer"):
            outcomes = outcomes_by.get((system, entry["name"]))
            if outcomes is None:
                continue
            kind = "peer" if system == "peer" else "rfr"
            summary = summarise(outcomes, thresholds[kind], TOP_K, extra_thresholds=extra if kind == "rfr" else [])
            if system == "peer":
                summary = peer_units(summary)
            summary["timing"] = entry[f"{kind}_timing"]
            summary["probes"] = [o.to_dict() for o in outcomes]
            systems[system] = summary
            if labels:
                fairness[system] = by_group(outcomes, labels[1], thresholds[kind])
        out.append(
            {"name": entry["name"], "description": entry["description"], "systems": systems, "fairness": fairness}
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
