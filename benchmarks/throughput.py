"""Throughput of the face pipeline, stage by stage and end to end, against the dlib peer.

Run from the project root::

    python -m benchmarks.throughput [--images 500] [--frames 50] [--intra-op-threads N]

Two workloads, both held in memory as encoded bytes before any timing:

* ``lfw``: N LFW images (250x250 JPEG), drawn with a fixed seed;
* ``frames_1080p``: 1920x1080 JPEG frames composed at run time from LFW images, each resized to a
  random side (so the faces differ in size) and laid on a plain background, several per frame.

Stages of ours: decode, detection (multi-view YuNet), alignment, quality, embedding (SFace, one
batch per image as the pipeline does) and end to end (``FacePipeline.analyse_bytes``). Stages of
the peer (face_recognition's pipeline on dlib): decode, HOG detection (upsample 1), 5-point
landmarks, ResNet descriptor (num_jitters=1) and end to end. The end-to-end passes of ours and the
peer alternate in chunks of images so that load from other processes on the machine falls on both
alike. Also measured in the same run: numpy float32 matmul throughput (the machine's GEMM
ceiling) and the fraction of it the embedding stage reaches, from the recognizer's MACs counted on
its ONNX graph.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import shape_inference

from benchmarks.common import (
    DEFAULT_LFW_ROOT,
    PROJECT_ROOT,
    build_pipeline,
    current_rss_mib,
    default_out,
    peak_rss_mib,
    stamp,
    write_json,
)
from service.embeddings.align import align_face
from service.embeddings.detector import YuNetDetector
from service.embeddings.onnx_session import PrepareOptions, prepare_model
from service.embeddings.packs import ModelFile, resolve_verified
from service.embeddings.pipeline import FacePipeline

FRAME_W, FRAME_H = 1920, 1080

# --------------------------------------------------------------------------------------------
# FLOPs of an ONNX graph


def count_macs(model: onnx.ModelProto, batch: int = 1) -> dict[str, int]:
    """Multiply-accumulates of the Conv, Gemm and MatMul nodes for one input of ``batch`` items.

    Symbolic batch dimensions of the graph inputs are fixed to ``batch`` and the shapes inferred.
    Conv: N * C_out * H_out * W_out * (C_in / group) * kH * kW. Gemm/MatMul: M * N * K.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    initializers = {init.name for init in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.dim_value = batch
    del model.graph.value_info[:]
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int]] = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)

    totals = {"Conv": 0, "Gemm": 0, "MatMul": 0, "unresolved_nodes": 0}
    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        inputs = [shapes.get(name) for name in node.input[:2]]
        out = shapes.get(node.output[0])
        if any(s is None or 0 in s for s in [*inputs, out]):
            totals["unresolved_nodes"] += 1
            continue
        assert out is not None and inputs[0] is not None and inputs[1] is not None
        if node.op_type == "Conv":
            weight = inputs[1]  # C_out, C_in / group, kH, kW
            totals["Conv"] += int(np.prod(out, dtype=np.int64)) * int(np.prod(weight[1:], dtype=np.int64))
        elif node.op_type == "Gemm":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            a_shape = inputs[0][::-1] if attrs.get("transA", 0) else inputs[0]
            totals["Gemm"] += int(np.prod(out, dtype=np.int64)) * int(a_shape[-1])
        else:
            totals["MatMul"] += int(np.prod(out, dtype=np.int64)) * int(inputs[0][-1])
    totals["total"] = totals["Conv"] + totals["Gemm"] + totals["MatMul"]
    return totals


def prepared_model_path(pipeline: FacePipeline, model: ModelFile, dynamic_batch: bool) -> Path:
    """The rewritten model file the pipeline's session runs (cached by ``prepare_model``)."""
    source = resolve_verified(model, pipeline.settings.models_dir)
    options = PrepareOptions(dynamic_batch=dynamic_batch)
    return prepare_model(source, model.sha256, pipeline.settings.cache_dir / "models", options)


# --------------------------------------------------------------------------------------------
# The machine's GEMM ceiling

_MATMUL_SNIPPET = """
import json, sys, time
import numpy as np
n, reps, rounds = (int(v) for v in sys.argv[1:4])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
a @ b; a @ b  # warm-up
rates = []
for _ in range(rounds):
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    rates.append(2.0 * n ** 3 * reps / (time.perf_counter() - start) / 1e9)
print(json.dumps({"best_gflops": max(rates), "median_gflops": sorted(rates)[len(rates) // 2]}))
"""


def matmul_gflops(size: int, reps: int, rounds: int, threads: int | None) -> dict[str, Any]:
    """float32 ``size``x``size`` GEMM rate with numpy, in a child so the BLAS thread count applies."""
    env = dict(os.environ)
    if threads is not None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    out = subprocess.run(
        [sys.executable, "-c", _MATMUL_SNIPPET, str(size), str(reps), str(rounds)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    result.update({"size": size, "reps": reps, "rounds": rounds, "blas_threads": threads or "default"})
    return result


# --------------------------------------------------------------------------------------------
# Workloads


def lfw_files(root: Path) -> list[Path]:
    files = sorted(p for p in root.glob("*/*.jpg") if p.parent.name != "protocol")
    if not files:
        raise SystemExit(f"no LFW images under {root}")
    return files


def compose_frames(
    files: Sequence[Path], count: int, per_frame: int, rng: random.Random, min_side: int, max_side: int
) -> tuple[list[bytes], int]:
    """1920x1080 JPEG frames, each with ``per_frame`` LFW images resized and laid on a plain colour.

    The frame is split into a grid of cells (one image per cell, so they never overlap); each
    image gets a random side in [min_side, max_side] and a random place inside its cell.
    """
    cols = int(np.ceil(np.sqrt(per_frame * FRAME_W / FRAME_H)))
    rows = int(np.ceil(per_frame / cols))
    cell_w, cell_h = FRAME_W // cols, FRAME_H // rows
    max_side = min(max_side, cell_w, cell_h)
    frames, placed = [], 0
    for _ in range(count):
        grey = rng.randint(60, 200)
        frame = np.full((FRAME_H, FRAME_W, 3), grey, dtype=np.uint8)
        cells = rng.sample(range(cols * rows), per_frame)
        for cell in cells:
            tile = cv2.imread(str(rng.choice(files)), cv2.IMREAD_COLOR)
            if tile is None:
                continue
            side = rng.randint(min_side, max_side)
            interp = cv2.INTER_AREA if side < tile.shape[0] else cv2.INTER_LINEAR
            tile = cv2.resize(tile, (side, side), interpolation=interp)
            cx, cy = (cell % cols) * cell_w, (cell // cols) * cell_h
            x = cx + rng.randint(0, cell_w - side)
            y = cy + rng.randint(0, cell_h - side)
            frame[y : y + side, x : x + side] = tile
            placed += 1
        ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        frames.append(encoded.tobytes())
    return frames, placed


# --------------------------------------------------------------------------------------------
# Timing


@dataclass
class StageTimes:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    @contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)


def rates(seconds: float, images: int, faces: int) -> dict[str, float]:
    return {
        "seconds": round(seconds, 3),
        "images_per_s": round(images / seconds, 2) if seconds > 0 else 0.0,
        "faces_per_s": round(faces / seconds, 2) if seconds > 0 else 0.0,
        "ms_per_image": round(1000.0 * seconds / images, 2) if images else 0.0,
    }


def stage_rates(times: StageTimes, images: int, faces: int) -> dict[str, dict[str, float]]:
    stages = {stage: rates(s, images, faces) for stage, s in times.seconds.items()}
    total = sum(times.seconds.values())
    for stage, s in times.seconds.items():
        stages[stage]["share_of_stage_sum"] = round(s / total, 4) if total > 0 else 0.0
    return stages


def ours_stages(pipeline: FacePipeline, data: Sequence[bytes]) -> dict[str, Any]:
    """Every stage timed on its own, image by image, each fed with the previous stage's output.

    Image by image (rather than stage by stage over the whole set) so that no decoded frames pile
    up in memory and the peak RSS stays the pipeline's own.
    """
    times = StageTimes()
    detector_times = StageTimes()
    n_faces = views = 0
    canvases = 0.0
    largest_batch = 0
    for blob in data:
        with times.timing("decode"):
            image = pipeline.decode(blob)
        with times.timing("detect"):
            faces = pipeline.detect(image)
        with times.timing("align"):
            aligned = [align_face(image, face.landmarks) for face in faces]
        with times.timing("quality"):
            for face, crop in zip(faces, aligned, strict=True):
                pipeline.quality.assess(face, crop)
        with times.timing("embed"):
            pipeline.recognizer.embed(aligned)
        n_faces += len(faces)
        largest_batch = max(largest_batch, len(faces))
        image_views, image_canvases = detector_steps(pipeline, image, detector_times)
        views += image_views
        canvases += image_canvases
    breakdown: dict[str, Any] = {}
    if views:
        steps = detector_times.seconds
        rest = max(0.0, times.seconds["detect"] - sum(steps.values()))
        breakdown = {
            "views": views,
            "views_per_image": round(views / len(data), 3),
            "canvas": list(pipeline.detector.model.input_size),
            "full_canvases_per_image": round(canvases / len(data), 3),
            "ms_per_view": {k: round(1000.0 * v / views, 3) for k, v in steps.items()},
            "seconds": {k: round(v, 3) for k, v in steps.items()} | {"decode_nms_mapping": round(rest, 3)},
        }
    return {
        "faces": n_faces,
        "faces_per_image": round(n_faces / len(data), 3),
        "stages": stage_rates(times, len(data), n_faces),
        "detector_breakdown": breakdown,
        "largest_embed_batch": largest_batch,
    }


def detector_steps(pipeline: FacePipeline, image: NDArray[np.uint8], times: StageTimes) -> tuple[int, float]:
    """Where detection time goes: canvas rendering, blob conversion, the network.

    Re-runs the detector's own steps (its view plan, ``_render``, the session) on every view of
    ``image``; the rest (output decoding, NMS, mapping back) is the detect stage's time minus
    these. Returns the number of views (0 for a detector other than YuNet) and the sum of their
    canvas areas as fractions of the model's full canvas (views run on trimmed canvases).
    """
    det = pipeline.detector
    if not isinstance(det, YuNetDetector):
        return 0, 0.0
    views = det.plan_views(*image.shape[:2])
    full = det.canvas_w * det.canvas_h
    for view in views:
        with times.timing("render"):
            canvas = det._render(image, view)
        with times.timing("blob"):
            blob = det.blob(canvas)
        with times.timing("network"):
            det.session.run(None, {det.input_name: blob})
    return len(views), sum(v.canvas_w * v.canvas_h for v in views) / full


def peer_stages(peer: Any, data: Sequence[bytes]) -> dict[str, Any]:
    times = StageTimes()
    n_faces = 0
    for blob in data:
        with times.timing("decode"):
            rgb = peer.decode(blob)
        with times.timing("detect"):
            found = peer.detect(rgb)
        with times.timing("landmarks"):
            shapes = [peer.landmarks(rgb, rect) for rect in found]
        with times.timing("embed"):
            for shape in shapes:
                peer.describe(rgb, shape)
        n_faces += len(found)
    return {
        "faces": n_faces,
        "faces_per_image": round(n_faces / len(data), 3),
        "stages": stage_rates(times, len(data), n_faces),
    }


def interleaved_end_to_end(
    pipeline: FacePipeline, peer: Any | None, data: Sequence[bytes], chunk: int
) -> dict[str, Any]:
    """End to end over all images, ours and the peer alternating chunk by chunk."""
    ours_s = peer_s = 0.0
    ours_faces = peer_faces = 0
    for start in range(0, len(data), chunk):
        part = data[start : start + chunk]
        t0 = time.perf_counter()
        for blob in part:
            ours_faces += len(pipeline.analyse_bytes(blob).faces)
        ours_s += time.perf_counter() - t0
        if peer is not None:
            t0 = time.perf_counter()
            for blob in part:
                peer_faces += len(peer.analyse_bytes(blob))
            peer_s += time.perf_counter() - t0
    result: dict[str, Any] = {"ours": rates(ours_s, len(data), ours_faces) | {"faces": ours_faces}}
    if peer is not None:
        result["peer"] = rates(peer_s, len(data), peer_faces) | {"faces": peer_faces}
        # Same images for both: the ratio of images/s is the inverse ratio of the times.
        result["ratio_images_per_s"] = round(peer_s / ours_s, 3) if ours_s > 0 else 0.0
        result["ratio_faces_per_s"] = round(
            (ours_faces / ours_s) / (peer_faces / peer_s) if peer_faces and ours_s else 0.0, 3
        )
    return result


# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--lfw-root", type=Path, default=DEFAULT_LFW_ROOT, help="LFW root folder")
    parser.add_argument("--images", type=int, default=500, help="LFW images to time")
    parser.add_argument("--frames", type=int, default=50, help="composed 1920x1080 frames to time")
    parser.add_argument("--faces-per-frame", type=int, default=6, help="LFW images laid on each frame")
    parser.add_argument("--min-side", type=int, default=120, help="smallest LFW image side on a frame")
    parser.add_argument("--max-side", type=int, default=420, help="largest LFW image side on a frame")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=25, help="images per alternation of ours/peer")
    parser.add_argument("--intra-op-threads", type=int, help="override ONNX Runtime intra-op threads")
    parser.add_argument("--no-peer", action="store_true", help="skip the dlib peer")
    parser.add_argument(
        "--levers", action="store_true", help="only: end to end with CenterFace landmarks and flip each on and off"
    )
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--matmul-reps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=default_out("throughput"), help="results JSON")
    return parser


LEVERS = {  # (refine_landmarks, flip)
    "neither": (False, False),
    "landmarks": (True, False),
    "flip": (False, True),
    "landmarks+flip": (True, True),
}


def levers_end_to_end(data: list[bytes], chunk: int, threads: int | None, seed: int) -> dict[str, Any]:
    """End-to-end ms per LFW image with each CCTV lever on and off, the four pipelines alternating in
    chunks so that load from other processes falls on all alike."""
    from service.config import Settings
    from service.embeddings.pipeline import FacePipeline

    pipelines = {}
    for name, (refine, flip) in LEVERS.items():
        settings = Settings()
        settings.detection.refine_landmarks = refine
        settings.recognition.flip = flip
        if threads is not None:
            settings.runtime.intra_op_threads = threads
        pipelines[name] = FacePipeline.from_settings(settings)
        for blob in data[:3]:
            pipelines[name].analyse_bytes(blob)
    seconds = dict.fromkeys(LEVERS, 0.0)
    for lo in range(0, len(data), chunk):
        for name, pipeline in pipelines.items():
            started = time.perf_counter()
            for blob in data[lo : lo + chunk]:
                pipeline.analyse_bytes(blob)
            seconds[name] += time.perf_counter() - started
    base = seconds["neither"]
    return stamp(
        pipelines["neither"].pack_id,
        benchmark="throughput_levers",
        images=len(data),
        seed=seed,
        load_average_1_5_15=os.getloadavg(),
        ms_per_image={k: round(1000 * v / len(data), 2) for k, v in seconds.items()},
        ratio_to_neither={k: round(v / base, 3) for k, v in seconds.items()},
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    wall = time.perf_counter()
    rng = random.Random(args.seed)
    files = lfw_files(args.lfw_root)
    chosen = rng.sample(files, min(args.images, len(files)))
    lfw_data = [p.read_bytes() for p in chosen]
    if args.levers:
        out = args.out if args.out != default_out("throughput") else default_out("throughput_levers")
        payload = levers_end_to_end(lfw_data, args.chunk, args.intra_op_threads, args.seed)
        write_json(out, payload)
        print(json.dumps({k: payload[k] for k in ("ms_per_image", "ratio_to_neither")}, indent=1))
        return 0
    frames, placed = compose_frames(files, args.frames, args.faces_per_frame, rng, args.min_side, args.max_side)
    workloads = {"lfw": lfw_data, "frames_1080p": frames}

    pipeline = build_pipeline(args.intra_op_threads)
    threads = pipeline.settings.runtime.intra_op_threads
    results: dict[str, Any] = stamp(
        pipeline.pack_id,
        benchmark="throughput",
        intra_op_threads=threads,
        inter_op_threads=pipeline.settings.runtime.inter_op_threads,
        embed_batch_size=pipeline.settings.runtime.embed_batch_size,
        workloads={
            "lfw": {"images": len(lfw_data), "seed": args.seed, "size": "250x250"},
            "frames_1080p": {
                "frames": len(frames),
                "lfw_images_placed": placed,
                "per_frame": args.faces_per_frame,
                "lfw_image_side_px": [args.min_side, args.max_side],
                "background": "plain grey, random level per frame",
                "jpeg_quality": 90,
            },
        },
    )
    print(
        f"throughput: pack {pipeline.pack_id}, intra-op threads {threads}, "
        f"{len(lfw_data)} LFW images, {len(frames)} 1080p frames ({placed} LFW images placed)"
    )

    # Model FLOPs, from the graphs the sessions run.
    rec_macs = count_macs(onnx.load(str(prepared_model_path(pipeline, pipeline.manifest.recognizer, True))))
    det_macs = count_macs(onnx.load(str(prepared_model_path(pipeline, pipeline.manifest.detector, False))))
    results["model_macs"] = {"recognizer_per_face": rec_macs, "detector_per_canvas": det_macs}
    rec_flops = 2.0 * rec_macs["total"]
    det_flops = 2.0 * det_macs["total"]

    # Warm-up: session first runs, allocator growth, the peer's model loading.
    for blob in [*lfw_data[:3], *frames[:2]]:
        pipeline.analyse_bytes(blob)
    results["rss_mib_after_load_and_warmup"] = round(current_rss_mib() or 0.0, 1)

    datasets: dict[str, Any] = {}
    for name, data in workloads.items():
        print(f"  ours: stages on {name} ...", file=sys.stderr, flush=True)
        entry = {"ours": ours_stages(pipeline, data)}
        datasets[name] = entry
    results["peak_rss_mib_ours_only"] = round(peak_rss_mib(), 1)

    peer = None
    if not args.no_peer:
        from benchmarks.dlib_peer import DlibPeer

        peer = DlibPeer()
        for blob in [*lfw_data[:3], *frames[:1]]:
            peer.analyse_bytes(blob)
        for name, data in workloads.items():
            print(f"  peer: stages on {name} ...", file=sys.stderr, flush=True)
            datasets[name]["peer"] = peer_stages(peer, data)

    for name, data in workloads.items():
        print(f"  end to end on {name} (ours and peer alternating) ...", file=sys.stderr, flush=True)
        e2e = interleaved_end_to_end(pipeline, peer, data, args.chunk)
        datasets[name]["ours"]["stages"]["end_to_end"] = e2e["ours"]
        if peer is not None:
            datasets[name]["peer"]["stages"]["end_to_end"] = e2e["peer"]
            datasets[name]["ratio_end_to_end_images_per_s"] = e2e["ratio_images_per_s"]
            datasets[name]["ratio_end_to_end_faces_per_s"] = e2e["ratio_faces_per_s"]
        ours = datasets[name]["ours"]
        embed = ours["stages"]["embed"]
        ours["embed_gflops"] = round(ours["faces"] * rec_flops / embed["seconds"] / 1e9, 2)
        canvases = ours["detector_breakdown"].get("full_canvases_per_image", 0.0) * len(data)
        net_s = ours["detector_breakdown"].get("seconds", {}).get("network", 0.0)
        if canvases and net_s:
            # Convolution MACs scale with the canvas area.
            ours["detector_network_gflops"] = round(canvases * det_flops / net_s / 1e9, 2)
    results["datasets"] = datasets

    print("  numpy float32 matmul ...", file=sys.stderr, flush=True)
    matmul = {
        "default_threads": matmul_gflops(args.matmul_size, args.matmul_reps, 3, None),
        "one_thread": matmul_gflops(args.matmul_size, args.matmul_reps, 3, 1),
        f"{threads}_threads": matmul_gflops(args.matmul_size, args.matmul_reps, 3, threads),
    }
    results["matmul"] = matmul
    peak = max(m["best_gflops"] for m in matmul.values())
    same_threads = matmul[f"{threads}_threads"]["best_gflops"]
    results["embed_fraction_of_matmul"] = {
        name: {
            "embed_gflops": datasets[name]["ours"]["embed_gflops"],
            "of_best_matmul": round(datasets[name]["ours"]["embed_gflops"] / peak, 4),
            "of_matmul_same_threads": round(datasets[name]["ours"]["embed_gflops"] / same_threads, 4),
        }
        for name in workloads
    }
    results["peak_rss_mib"] = round(peak_rss_mib(), 1)
    results["wall_seconds"] = round(time.perf_counter() - wall, 1)
    write_json(args.out, results)
    summary(results)
    print(f"wrote {args.out.relative_to(PROJECT_ROOT) if args.out.is_relative_to(PROJECT_ROOT) else args.out}")
    return 0


def summary(results: dict[str, Any]) -> None:
    m = results["model_macs"]
    rec = m["recognizer_per_face"]["total"]
    det = m["detector_per_canvas"]["total"]
    print(f"model cost: recognizer {2 * rec / 1e9:.3f} GFLOP/face, detector {2 * det / 1e9:.3f} GFLOP/canvas")
    for name, entry in results["datasets"].items():
        ours = entry["ours"]
        print(f"[{name}] ours: {ours['faces']} faces ({ours['faces_per_image']}/image)")
        for stage, r in ours["stages"].items():
            print(
                f"  {stage:11s} {r['images_per_s']:8.2f} img/s {r['faces_per_s']:8.2f} faces/s "
                f"{r['ms_per_image']:8.2f} ms/img"
            )
        bd = ours["detector_breakdown"]
        if bd:
            per_view = ", ".join(f"{k} {v:.2f}" for k, v in bd["ms_per_view"].items())
            print(
                f"  detector: {bd['views_per_image']} views/image "
                f"({bd['full_canvases_per_image']} full canvases); ms per view: {per_view}"
            )
        if "peer" in entry:
            peer = entry["peer"]
            print(f"[{name}] peer dlib: {peer['faces']} faces ({peer['faces_per_image']}/image)")
            for stage, r in peer["stages"].items():
                print(
                    f"  {stage:11s} {r['images_per_s']:8.2f} img/s {r['faces_per_s']:8.2f} faces/s "
                    f"{r['ms_per_image']:8.2f} ms/img"
                )
            print(
                f"[{name}] end to end ours/peer: {entry['ratio_end_to_end_images_per_s']:.2f}x images/s, "
                f"{entry['ratio_end_to_end_faces_per_s']:.2f}x faces/s (target >= 3x images/s)"
            )
    mm = results["matmul"]
    print(
        "numpy sgemm "
        + ", ".join(f"{k}: {v['best_gflops']:.1f} GFLOP/s" for k, v in mm.items())
        + f" ({mm['default_threads']['size']}^2)"
    )
    for name, f in results["embed_fraction_of_matmul"].items():
        print(
            f"[{name}] embedding stage {f['embed_gflops']:.1f} GFLOP/s = {f['of_best_matmul'] * 100:.1f}% of "
            f"the best sgemm, {f['of_matmul_same_threads'] * 100:.1f}% of sgemm at the same thread count"
        )
    print(
        f"peak RSS {results['peak_rss_mib_ours_only']:.0f} MiB (ours only), "
        f"{results['peak_rss_mib']:.0f} MiB (with the peer); wall {results['wall_seconds']:.0f} s"
    )


if __name__ == "__main__":
    raise SystemExit(main())
