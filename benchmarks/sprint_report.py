"""The sprint benchmark's report: the Markdown tables (beside the Met's sprint, per condition, fairness,
set-up) and the CMC and DET plots, from the results payload that ``benchmarks/sprint.py`` writes.

``python -m benchmarks.sprint --render RESULTS.json`` re-writes them from a results file (:func:`render`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

from benchmarks.sprint_peer import PEER_THRESHOLD
from benchmarks.sprint_probes import TOP_K


def _pct(k: int | None, n: int | None) -> str:
    if k is None or not n:
        return "–"
    return f"{k} ({100.0 * k / n:.0f}%)"


def _r(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100.0 * x:.{digits}f}%"


SYSTEMS = [
    ("rfr", "rfr (YuNet+SFace)"),
    ("rfr_nogate", "rfr, quality gate off"),
    ("peer", "peer (dlib HOG+ResNet)"),
]


def _met_table(payload: dict[str, Any], columns: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    head = " | ".join(f"{s} {c['name']}" for s, _, c in columns)
    lines = [f"| | Met, Oct 2023 | {head} |", "|---|---|" + "---|" * len(columns)]

    def row(title: str, met: str, fn: Callable[[dict[str, Any]], str]) -> None:
        lines.append(f"| {title} | {met} | " + " | ".join(fn(c["systems"][s]) for s, _, c in columns) + " |")

    def of_supplied(m: dict[str, Any], k: int) -> str:
        return _pct(k, m["images"]["supplied"])

    row("images supplied", "401", lambda m: str(m["images"]["supplied"]))
    row("images with a face", "–", lambda m: of_supplied(m, m["images"]["with_a_face"]))
    row("usable (probe face searched)", "302 (75%)", lambda m: of_supplied(m, m["images"]["searched"]))
    row(
        "true person listed above threshold (a reviewer can confirm)",
        "149 (37%) positive identifications",
        lambda m: of_supplied(m, m["mated"]["listed_above_threshold"]),
    )
    row(
        "not enrolled, yet a candidate above threshold",
        "–",
        lambda m: of_supplied(m, m["nonmated"]["any_candidate_above_threshold"]),
    )
    cfg = payload["config"]
    lines += [
        "",
        "The Met's probes were all real CCTV; how many showed enrolled people is not public. Here "
        f"{cfg['mated']} of each rfr column's images show an enrolled person and {cfg['nonmated']} do not "
        "(the peer ran on a subsample, see below). Percentages are of images supplied.",
    ]
    return lines


def _condition_row(label: str, name: str, m: dict[str, Any]) -> str:
    mated, nm, images = m["mated"], m["nonmated"], m["images"]
    n, supplied = mated["n"], images["supplied"]

    def fnir(target: str) -> str:
        v, pooled = m["fnir_at_fpir"][target], m["fnir_at_fpir_pooled"][target]
        return f"{_r(v['fnir'])}{'' if v['resolved'] else '*'} / {_r(pooled['fnir'])}"

    cells = [
        label,
        name,
        str(supplied),
        _pct(images["with_a_face"], supplied),
        _pct(images["probe_face_found"], supplied),
        _pct(images["usable"], supplied),
        _pct(mated["rank1"], n),
        _pct(mated["top10"], n),
        _pct(mated["top50"], n),
        _pct(mated["rank1_above_threshold"], n),
        _pct(mated["listed_above_threshold"], n),
        _pct(nm["any_candidate_above_threshold"], nm["n"]),
        _pct(mated["wrong_candidate_above_threshold"], n),
        fnir("0.01"),
        fnir("0.003"),
        str(m["timing"]["images_per_s"]),
    ]
    return "| " + " | ".join(cells) + " |"


CONDITION_HEADER = [
    "system",
    "condition",
    "supplied",
    "with a face",
    "named face found",
    "usable",
    "rank 1",
    "top 10",
    "top 50",
    "rank 1 ≥ thr",
    "listed ≥ thr",
    "FPIR at thr",
    "wrong cand. ≥ thr (mated)",
    "FNIR @ FPIR 1%",
    "FNIR @ FPIR 0.3%",
    "images/s",
]


def _fairness_lines(payload: dict[str, Any], conds: list[dict[str, Any]]) -> list[str]:
    fairness = payload.get("fairness")
    if not fairness:
        return [
            "No per-person demographic labels were supplied (`--labels FILE.csv` with `name,sex,age_band,...`), "
            "so FNIR and FPIR are not broken down by group. LFW carries no such labels.",
        ]
    lines = [
        f"Labels from `{fairness['labels_file']}`. FNIR: the true person not listed above the threshold; "
        "FPIR: a non-mated search with a candidate above it. Groups under 20 searches are marked *small*.",
    ]
    for c in conds:
        for s, label in SYSTEMS:
            groups = c.get("fairness", {}).get(s)
            if not groups:
                continue
            lines += ["", f"**{label}, {c['name']}**", ""]
            lines += [
                "| label | group | mated | FNIR | rank-1 miss | non-mated | FPIR |",
                "|---|---|---|---|---|---|---|",
            ]
            for column, values in groups.items():
                for value, g in values.items():
                    small = " *small*" if g["small_sample"] else ""
                    cells = [column, value + small, str(g["mated"]), _r(g["fnir"]), _r(g["rank1_miss"])]
                    cells += [str(g["nonmated"]), _r(g["fpir"])]
                    lines.append("| " + " | ".join(cells) + " |")
    return lines


def _setup_lines(payload: dict[str, Any]) -> list[str]:
    setup, cfg = payload["setup"], payload["config"]
    g = setup["gallery"]
    lines = [
        f"* Gallery enrolment (`rfr gallery import --manifest`): {g['enrolled']} of {g['people']} people enrolled "
        f"in {g['seconds']} s ({g['images_per_s']} images/s over {g['images_tried']} images tried). Each person's "
        f"first image was rejected for {g['first_image_rejected']} people ({g['first_image_rejected_reasons']}); "
        f"their next image was tried (rounds: {g['rounds']}).",
        f"* Authentication: {setup['auth']}.",
        f"* Probes per condition: {cfg['mated']} mated (other images of enrolled people, one per person first) and "
        f"{cfg['nonmated']} non-mated (images of held-out people); degradations apply to probes only, seeded per "
        "probe and condition.",
        f"* Probe face: {cfg['probe_face_rule']}.",
    ]
    peer = setup.get("peer")
    if peer:
        lines.append(
            "* Peer: dlib HOG (upsample 1) + 5-point landmarks + ResNet descriptor (face_recognition's pipeline), "
            "searched with FAISS `IndexFlatL2`: exact euclidean distance, dlib's native metric, so its own "
            f"threshold {PEER_THRESHOLD} keeps its meaning (scores are negated distances). Gallery: "
            f"{peer['enrolled']} enrolled (the same images as rfr), {peer['rejected']} with no face near the centre, "
            f"{peer['gallery_seconds_per_image']} s per image (descriptors cached per file). Probes: the first "
            f"{peer['mated']} mated and {peer['nonmated']} non-mated of each condition (a random subsample of "
            "rfr's). The peer has no quality gate: every named face found is searched."
        )
    lines.append(f"* Wall time {setup['wall_s']:.0f} s; peak RSS of this process {setup['peak_rss_mib']:.0f} MiB.")
    if setup.get("full_run_estimate"):
        lines.append(f"* {setup['full_run_estimate']}")
    lines += [f"* {note}" for note in payload.get("notes", [])]
    return lines


def _persons_lines(persons: dict[str, dict[str, Any]]) -> list[str]:
    """The incidents' table: each still alone beside the incident's person searched as one unit."""
    if not persons:
        return []
    lines = [
        "",
        "## Persons within an incident",
        "",
        "Incidents of 3-6 stills of one person (two thirds enrolled, a third held out), uploaded with an "
        "incident reference; the service groups each incident's faces into persons and searches each with a "
        "fused score (`persons` in the results). Frame figures are the same stills searched one by one.",
        "",
        "| condition | incidents | stills | frame rank 1 | frame rank 1 ≥ thr | person rank 1 | person top 10 | "
        "person rank 1 ≥ person thr | strangers' persons ≥ thr | person thr |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in persons.items():
        lines.append(
            f"| {name} | {p['persons_mated']} + {p['persons_strangers']} | {p['stills']} | {_r(p['frame_rank1'])} | "
            f"{_r(p['frame_rank1_above'])} | {_r(p['person_rank1'])} | {_r(p['person_rank10'])} | "
            f"{_r(p['person_rank1_above'])} | {p['strangers_above']} of {p['persons_strangers']} | "
            f"{p['person_threshold']} |"
        )
    return lines


def markdown(payload: dict[str, Any]) -> str:
    conds = payload["conditions"]
    columns = [(s, label, c) for s, label in SYSTEMS for c in conds if c["systems"].get(s)]
    met_columns = [col for col in columns if col[0] != "rfr_nogate"]
    cfg, st = payload["config"], payload["stamp"]
    dirty = " (uncommitted changes)" if st["git_dirty"] else ""
    lines = [
        "# Sprint benchmark",
        "",
        f"Dataset `{cfg['dataset']}`: gallery {cfg['gallery_people']} people (one image each), "
        f"{cfg['held_out_people']} people held out; seed {cfg['seed']}; server top-k {TOP_K}; rfr operating "
        f"threshold {payload['rfr_threshold']} (cosine), peer {PEER_THRESHOLD} (euclidean). Commit "
        f"`{st['git_commit'][:12]}`{dirty}, pack `{st['pack_id']}`, {st['date_utc']}.",
        "",
        "## Beside the Met's first retail sprint",
        "",
        *_met_table(payload, met_columns),
        "",
        "## Per condition",
        "",
        "| " + " | ".join(CONDITION_HEADER) + " |",
        "|" + "---|" * len(CONDITION_HEADER),
        *[_condition_row(label, c["name"], c["systems"][s]) for s, label, c in columns],
        "",
        "Rank and threshold columns are of mated searches (misses include images where the named face was not "
        "found or not usable); FPIR is of non-mated searches. *FNIR @ FPIR* reads *held-out / pooled*: held-out "
        "uses the non-mated probes only (`*`: the target is below 1/n, not resolved by the sample); pooled adds "
        "each mated search with its mate removed (its best wrong candidate: a non-mated search at gallery size "
        "N-1). *wrong cand. ≥ thr (mated)*: mated searches whose best wrong candidate clears the threshold.",
    ]
    lines += _persons_lines(payload.get("persons") or {})
    if cfg.get("extra_thresholds"):
        lines += ["", "## At other thresholds (recomputed from the returned scores)", ""]
        lines += ["| system | condition | threshold | FPIR | FNIR | rank 1 ≥ thr | wrong cand. ≥ thr |"]
        lines += ["|---|---|---|---|---|---|---|"]
        for s, label, c in columns:
            for t, v in c["systems"][s]["at_thresholds"].items():
                cells = [label, c["name"], t, _r(v["fpir"]), _r(v["fnir"]), _r(v["rank1_above"])]
                lines.append("| " + " | ".join([*cells, _r(v["wrong_candidate_above"])]) + " |")
    lines += ["", "## Conditions", ""]
    for c in conds:
        lines.append(f"* **{c['name']}**: {c['description']}")
        rfr = c["systems"].get("rfr")
        if rfr and rfr["poor_face_reasons"]:
            reasons = ", ".join(f"{k} {v}" for k, v in rfr["poor_face_reasons"].items())
            lines.append(f"  (rfr quality-gate reasons on named faces found: {reasons})")
    lines += ["", "## Fairness (R5)", "", *_fairness_lines(payload, conds)]
    lines += ["", "## Set-up and timings", "", *_setup_lines(payload)]
    plots = payload.get("plots", {})
    if plots:
        lines += ["", "Plots: " + ", ".join(f"[{k}]({Path(v).name})" for k, v in plots.items()) + "."]
    return "\n".join(lines) + "\n"


def plot(payload: dict[str, Any], out_prefix: Path) -> dict[str, str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}

    def finish(fig: Figure, ax: Axes, xlabel: str, ylabel: str, title: str, suffix: str) -> str:
        """Label ``ax`` (log x, y from 0 to 1), save ``fig`` as ``<prefix>_<suffix>.png``; the path."""
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 1)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(title)
        ax.legend(fontsize=8)
        path = out_prefix.with_name(f"{out_prefix.name}_{suffix}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return str(path)

    paths = {}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = {"rfr": "-", "rfr_nogate": ":", "peer": "--"}
    fig, ax = plt.subplots(figsize=(7, 5))
    for i, c in enumerate(payload["conditions"]):
        for s, m in c["systems"].items():
            if m and m["cmc"]:
                ax.plot(
                    range(1, len(m["cmc"]) + 1),
                    m["cmc"],
                    styles[s],
                    color=colours[i % len(colours)],
                    label=f"{s} {c['name']}",
                )
    paths["CMC"] = finish(
        fig,
        ax,
        "rank",
        "identification rate (true person within rank)",
        "CMC (no threshold, investigation mode)",
        "cmc",
    )

    fig, ax = plt.subplots(figsize=(7, 5))
    for i, c in enumerate(payload["conditions"]):
        for s, m in c["systems"].items():
            if not m:
                continue
            det = m["det"]
            fpir = np.array(det["fpir"])
            fnir = np.array(det["fnir"])
            ok = fpir > 0
            if ok.any():
                ax.plot(fpir[ok], fnir[ok], styles[s], color=colours[i % len(colours)], label=f"{s} {c['name']}")
    paths["DET"] = finish(
        fig,
        ax,
        "FPIR (non-mated searches with a candidate above threshold)",
        "FNIR (mated searches without the true person above threshold)",
        "DET (held-out non-mated searches)",
        "det",
    )
    return paths


def render(path: Path) -> int:
    """Re-write the Markdown and the plots of an existing results JSON (no benchmark is run)."""
    payload = json.loads(path.read_text(encoding="utf-8"))
    prefix = path.with_suffix("")
    payload["plots"] = plot(payload, prefix)
    path.with_suffix(".md").write_text(markdown(payload), encoding="utf-8")
    sys.stdout.write(markdown(payload))
    return 0
