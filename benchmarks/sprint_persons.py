"""The sprint benchmark's incidents: 3-6 degraded stills of one person per incident, through the service.

Each incident's stills are uploaded with one ``incident_reference`` (per-file provenance), the
service groups the incident's faces into persons and searches each person with a fused score;
this module reads the ``persons`` of ``GET /submissions/{id}/results`` and scores them: the person
holding the most of the incident's named faces is the incident's person; its rank-1 candidate
should be the enrolled person (rank-1, rank-1 above the person's threshold), and no incident of a
held-out person should have a candidate above it. The same stills, one by one, give the frame
figures beside them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import degrade as deg
from benchmarks.harness import ApiClient, mime_of, upload_images, wait_complete
from benchmarks.identification import pick_probe_face


@dataclass(frozen=True, slots=True)
class IncidentSpec:
    person: str
    enrolled: bool
    paths: list[Path]  # one per still; a path may repeat (degraded differently)


def build_incidents(
    people: dict[str, list[Path]],
    enrolled: dict[str, Path],
    held_out: list[str],
    count: int,
    seed: int,
    sizes: tuple[int, int] = (3, 6),
) -> list[IncidentSpec]:
    """Seeded: ``count`` incidents, two thirds of enrolled people (other images than the enrolled
    one), a third of held-out people; 3-6 stills each."""
    rng = np.random.default_rng([seed, 12])
    mated_pool = sorted(p for p in enrolled if len(people[p]) > 1)
    strangers = sorted(held_out)
    n_mated = min(len(mated_pool), round(count * 2 / 3))
    n_strangers = min(len(strangers), count - n_mated)
    chosen = [(mated_pool[i], True) for i in rng.choice(len(mated_pool), n_mated, replace=False)]
    chosen += [(strangers[i], False) for i in rng.choice(len(strangers), n_strangers, replace=False)]
    out = []
    for person, is_enrolled in chosen:
        pool = [p for p in people[person] if not is_enrolled or p != enrolled[person]]
        size = int(rng.integers(sizes[0], sizes[1] + 1))
        order = [pool[int(i)] for i in rng.permutation(len(pool))]
        out.append(IncidentSpec(person, is_enrolled, [order[n % len(order)] for n in range(size)]))
    return out


def run_incidents(
    client: ApiClient,
    condition: str,
    incidents: list[IncidentSpec],
    index: int,
    seed: int,
    chunk: int,
    poll_s: float,
    search_poor: bool,
) -> dict[str, Any]:
    """One submission of every incident's stills under ``condition``; the person-level and frame figures."""
    steps = deg.parse_condition(condition)
    files, provenance, owner, expected = [], [], [], []
    for n, incident in enumerate(incidents):
        for k, path in enumerate(incident.paths):
            key = f"incident|{n}|{k}|{path.parent.name}/{path.name}"
            out = deg.degrade_file(path.read_bytes(), steps, deg.probe_rng(seed, condition, key))
            suffix, mime = mime_of(out.data)
            files.append((f"incident-{n:04d}-{k}{suffix}", out.data, mime))
            provenance.append({"incident_reference": f"INC-{n:04d}"})
            owner.append(n)
            expected.append(out.face.centre)
    created = client.post_json(
        "/submissions",
        {
            "case_reference": f"BENCH/{index:02d}/{condition}/incidents"[:128],
            "purpose": "accuracy benchmark on public data (benchmarks/sprint.py, incidents)",
            "search_poor_faces": search_poor,
        },
    )
    sid = int(created["id"])
    started = time.perf_counter()
    image_ids = upload_images(client, sid, files, chunk, provenance=provenance)
    wait_complete(client, sid, poll_s)
    seconds = time.perf_counter() - started
    results = client.get(f"/submissions/{sid}/results")
    return score_incidents(results, incidents, image_ids, owner, expected, seconds)


def score_incidents(
    results: dict[str, Any],
    incidents: list[IncidentSpec],
    image_ids: list[int],
    owner: list[int],
    expected: list[tuple[float, float]],
    seconds: float,
) -> dict[str, Any]:
    position = {image_id: i for i, image_id in enumerate(image_ids)}
    named: dict[int, list[int]] = {n: [] for n in range(len(incidents))}  # incident -> its named faces' ids
    frames: list[dict[str, Any]] = []
    for image in results["images"]:
        i = position.get(int(image["id"]))
        if i is None:
            continue
        faces = image.get("faces") or []
        pick = pick_probe_face([f["box"] for f in faces], expected[i])
        if pick is None:
            continue
        face = faces[pick]
        named[owner[i]].append(int(face["id"]))
        frames.append({"incident": owner[i], "face": face})
    persons = results.get("persons", [])
    person_of_face = {f: p for p in persons for f in p["faces"]}
    rows: list[dict[str, Any]] = []
    for n, incident in enumerate(incidents):
        members = [person_of_face[f] for f in named[n] if f in person_of_face]
        if not members:
            rows.append({"enrolled": incident.enrolled, "found": False, "faces": 0})
            continue
        person = max(members, key=lambda p: sum(1 for f in named[n] if f in p["faces"]))
        candidates = person["candidates"]
        rank = next((c["rank"] for c in candidates if c["custody_reference"] == incident.person), None)
        top = candidates[0] if candidates else None
        rows.append(
            {
                "enrolled": incident.enrolled,
                "found": True,
                "faces": len(person["faces"]),
                "named_faces": len(named[n]),
                "searched": person["searched"],
                "rank": rank,
                "rank1_above": bool(rank == 1 and top is not None and top["above_threshold"]),
                "top_above": bool(top is not None and top["above_threshold"]),
                "threshold": person["threshold"],
            }
        )
    mated = [r for r in rows if r["enrolled"]]
    strangers = [r for r in rows if not r["enrolled"]]
    frame_mated = [f for f in frames if incidents[f["incident"]].enrolled]
    stills_mated = sum(1 for n in owner if incidents[n].enrolled)  # a still whose face was not found is a miss

    def frame_rank1(f: dict[str, Any]) -> bool:
        c = f["face"]["candidates"]
        return bool(c) and c[0]["custody_reference"] == incidents[f["incident"]].person

    def rate(k: int, n: int) -> float | None:
        return round(k / n, 4) if n else None

    return {
        "incidents": len(incidents),
        "stills": len(image_ids),
        "seconds": round(seconds, 1),
        "persons_mated": len(mated),
        "person_rank1": rate(sum(1 for r in mated if r.get("rank") == 1), len(mated)),
        "person_rank10": rate(sum(1 for r in mated if r.get("rank") and r["rank"] <= 10), len(mated)),
        "person_rank1_above": rate(sum(1 for r in mated if r.get("rank1_above")), len(mated)),
        "persons_strangers": len(strangers),
        "strangers_above": sum(1 for r in strangers if r.get("top_above")),
        "mean_faces_per_person": round(float(np.mean([r["faces"] for r in mated if r["found"]] or [0])), 2),
        "frames_mated": stills_mated,
        "frame_rank1": rate(sum(1 for f in frame_mated if frame_rank1(f)), stills_mated),
        "frame_rank1_above": rate(
            sum(1 for f in frame_mated if frame_rank1(f) and f["face"]["candidates"][0]["above_threshold"]),
            stills_mated,
        ),
        "person_threshold": next((r["threshold"] for r in rows if r.get("found") and r["faces"] > 1), None),
    }
