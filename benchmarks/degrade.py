"""CCTV-like degradations of probe stills: seeded, parameterised, pure numpy / OpenCV functions.

Every function takes a BGR ``uint8`` image and a ``numpy.random.Generator`` and returns a new
image (geometric ones also return the moved :class:`FaceGeometry` of the named person's face, so
the benchmark can still tell which detected face is the probe). Parameters given as a
``(low, high)`` range are drawn uniformly per image.

A *condition* is a chain of steps, each applied with a probability, in camera order: pose and
framing (rotation, off-centre crop), things in the scene (occlusion), optics and resolution
(downscale, defocus), subject motion, sensor (low light and noise), and encoding (JPEG). Presets:

``clean``     the file as supplied (its bytes are not touched)
``mild``      inter-eye 28-40 px, light blur/noise sometimes, JPEG 30-40
``moderate``  inter-eye 16-28 px, blur, low light and occlusion often, JPEG 20-35
``cctv``      inter-eye 12-22 px, motion blur often, dim, JPEG 15-30 (a 352x288 camera export)
``severe``    inter-eye 8-16 px, heavy blur, dark and noisy, occluded half the time, JPEG 10-25

A condition can also be written as steps joined by ``+``, each ``name[:key=value]...`` with a
value ``x`` or a range ``lo~hi`` (``p`` is the step's probability), e.g.
``downscale:ied=12~20+motion:length=4~8:p=0.5+jpeg:quality=10~20``. A single step name alone
(``jpeg``, ``motion``, ...) uses that step's moderate default with probability 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

Image = NDArray[np.uint8]
Range = tuple[float, float]

# Where the named person's face sits in an LFW still (250x250), as fractions of the width and
# height, measured with the YuNet detector on 150 random LFW images (medians): box x 80, y 64,
# w 93, h 126 px; 43 px between the eyes. Another dataset can pass its own geometry.
LFW_FACE_BOX_FRACTION = (0.32, 0.26, 0.37, 0.50)
LFW_INTER_EYE_FRACTION = 0.172


@dataclass(frozen=True, slots=True)
class FaceGeometry:
    """Where the named person's face is expected: box (x, y, w, h) and inter-eye distance, in pixels."""

    box: tuple[float, float, float, float]
    inter_eye_px: float

    @property
    def centre(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return (x + w / 2.0, y + h / 2.0)

    @classmethod
    def nominal(cls, width: int, height: int) -> FaceGeometry:
        fx, fy, fw, fh = LFW_FACE_BOX_FRACTION
        return cls((fx * width, fy * height, fw * width, fh * height), LFW_INTER_EYE_FRACTION * width)

    def transformed(self, matrix: NDArray[np.float64]) -> FaceGeometry:
        """The geometry after an affine map (2x3): the centre moves, sizes scale by the map's scale."""
        cx, cy = self.centre
        nx = float(matrix[0, 0] * cx + matrix[0, 1] * cy + matrix[0, 2])
        ny = float(matrix[1, 0] * cx + matrix[1, 1] * cy + matrix[1, 2])
        scale = math.sqrt(abs(float(np.linalg.det(matrix[:, :2]))))
        w, h = self.box[2] * scale, self.box[3] * scale
        return FaceGeometry((nx - w / 2.0, ny - h / 2.0, w, h), self.inter_eye_px * scale)


def _draw(rng: np.random.Generator, value: float | Range) -> float:
    if isinstance(value, tuple):
        lo, hi = value
        return float(rng.uniform(lo, hi)) if hi > lo else float(lo)
    return float(value)


# -- geometric steps ------------------------------------------------------------------------------


def downscale(
    image: Image, face: FaceGeometry, rng: np.random.Generator, ied: float | Range = (16.0, 28.0)
) -> tuple[Image, FaceGeometry]:
    """Shrink the whole still until the named face's inter-eye distance is ``ied`` px (never enlarges)."""
    target = _draw(rng, ied)
    scale = target / max(face.inter_eye_px, 1e-6)
    if scale >= 1.0:
        return image, face
    h, w = image.shape[:2]
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    out = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    matrix = np.array([[nw / w, 0.0, 0.0], [0.0, nh / h, 0.0]], dtype=np.float64)
    return np.ascontiguousarray(out), face.transformed(matrix)


def rotate(
    image: Image, face: FaceGeometry, rng: np.random.Generator, angle: float | Range = (-20.0, 20.0)
) -> tuple[Image, FaceGeometry]:
    """Off-angle as an in-plane rotation about the face centre (degrees; borders reflected)."""
    degrees = _draw(rng, angle)
    h, w = image.shape[:2]
    matrix = np.asarray(cv2.getRotationMatrix2D(face.centre, degrees, 1.0), dtype=np.float64)
    out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return np.ascontiguousarray(out), face.transformed(matrix)


def off_centre_crop(
    image: Image,
    face: FaceGeometry,
    rng: np.random.Generator,
    keep: float | Range = (0.6, 0.8),
    cut: float | Range = (0.0, 0.15),
) -> tuple[Image, FaceGeometry]:
    """Crop a window (``keep`` of each side) that puts the face against one border, cutting off up to ``cut`` of it."""
    h, w = image.shape[:2]
    fraction = _draw(rng, keep)
    cw, ch = max(8, round(w * fraction)), max(8, round(h * fraction))
    x, y, fw, fh = face.box
    side = int(rng.integers(4))  # 0 left, 1 right, 2 top, 3 bottom: where the face ends up
    overhang = _draw(rng, cut)
    # The crop's origin: the face sits at the chosen border (partly outside by `overhang`), and
    # a random position along the other axis that keeps the face inside.
    x0 = float(rng.uniform(x + fw - cw, x)) if cw > fw else x + (fw - cw) / 2.0
    y0 = float(rng.uniform(y + fh - ch, y)) if ch > fh else y + (fh - ch) / 2.0
    if side == 0:
        x0 = x + overhang * fw
    elif side == 1:
        x0 = x + fw * (1.0 - overhang) - cw
    elif side == 2:
        y0 = y + overhang * fh
    else:
        y0 = y + fh * (1.0 - overhang) - ch
    x0 = float(np.clip(x0, 0, w - cw))
    y0 = float(np.clip(y0, 0, h - ch))
    ix, iy = round(x0), round(y0)
    out = image[iy : iy + ch, ix : ix + cw]
    matrix = np.array([[1.0, 0.0, -ix], [0.0, 1.0, -iy]], dtype=np.float64)
    return np.ascontiguousarray(out), face.transformed(matrix)


def frame(
    image: Image, face: FaceGeometry, rng: np.random.Generator, width: float = 1280, height: float = 720
) -> tuple[Image, FaceGeometry]:
    """Paste the still at a random place in a larger CCTV frame (a dim, blurred, noisy background)."""
    fw, fh = round(width), round(height)
    h, w = image.shape[:2]
    if w > fw or h > fh:
        return image, face
    background = cv2.resize(image, (fw, fh), interpolation=cv2.INTER_LINEAR)
    background = cv2.GaussianBlur(background, (0, 0), sigmaX=max(fw, fh) / 60.0)
    background = (background.astype(np.float32) * 0.6 + rng.normal(0.0, 6.0, background.shape)).clip(0, 255)
    out = background.astype(np.uint8)
    ox, oy = int(rng.integers(0, fw - w + 1)), int(rng.integers(0, fh - h + 1))
    out[oy : oy + h, ox : ox + w] = image
    matrix = np.array([[1.0, 0.0, ox], [0.0, 1.0, oy]], dtype=np.float64)
    return out, face.transformed(matrix)


# -- in-scene occlusion ---------------------------------------------------------------------------


def _dark_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    base = rng.uniform(10, 90)
    tint = rng.uniform(-15, 15, size=3)
    b, g, r = (np.clip(base + tint, 0, 255)).astype(int).tolist()
    return (int(b), int(g), int(r))


def _skin_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    # BGR skin tones from dark to light (a hand of any complexion).
    tones = np.array([[45, 65, 100], [70, 100, 150], [100, 140, 195], [140, 175, 225]], dtype=np.float64)
    a = float(rng.uniform(0, len(tones) - 1))
    i = min(int(a), len(tones) - 2)
    tone = tones[i] * (1 - (a - i)) + tones[i + 1] * (a - i)
    b, g, r = np.clip(tone + rng.normal(0, 8, 3), 0, 255).astype(int).tolist()
    return (int(b), int(g), int(r))


def occlude(
    image: Image,
    face: FaceGeometry,
    rng: np.random.Generator,
    kinds: tuple[str, ...] = ("cap", "hood", "hand"),
    extent: float | Range = (0.2, 0.35),
) -> Image:
    """Draw a cap (brim over the brows), a hood (head and sides) or a hand (over mouth/cheek or an eye).

    ``extent`` is how far down the face (as a fraction of its height) a cap's brim comes, how much
    of each side a hood hides, or how large a hand is relative to the face.
    """
    out = image.copy()
    x, y, w, h = face.box
    cx, cy = face.centre
    kind = kinds[int(rng.integers(len(kinds)))]
    amount = _draw(rng, extent)
    if kind == "cap":
        colour = _dark_colour(rng)
        brim_y = y + h * (0.05 + amount)
        # The crown: a half ellipse over the top of the head, down to the brim.
        axes = (round(0.62 * w), round(max(brim_y - (y - 0.25 * h), 1.0)))
        cv2.ellipse(out, (round(cx), round(brim_y)), axes, 0, 180, 360, colour, -1, lineType=cv2.LINE_AA)
        # The brim sticks out on one side and casts a shadow just under it.
        direction = 1 if rng.random() < 0.5 else -1
        brim = np.array(
            [
                [cx - 0.55 * w, brim_y - 0.04 * h],
                [cx + direction * 0.95 * w, brim_y - 0.02 * h],
                [cx, brim_y + 0.06 * h],
            ]
        )
        cv2.fillPoly(out, [np.round(brim).astype(np.int32)], colour, lineType=cv2.LINE_AA)
        y0, y1 = round(max(brim_y, 0)), round(max(brim_y + 0.12 * h, 0))
        x0, x1 = round(max(x, 0)), round(max(x + w, 0))
        if y1 > y0 and x1 > x0:
            shadow = out[y0:y1, x0:x1].astype(np.float32) * 0.55
            out[y0:y1, x0:x1] = shadow.astype(np.uint8)
    elif kind == "hood":
        colour = _dark_colour(rng)
        mask = np.zeros(out.shape[:2], np.uint8)
        head = (round(cx), round(cy - 0.05 * h)), (round(0.85 * w), round(0.9 * h))
        cv2.ellipse(mask, head[0], head[1], 0, 0, 360, 255, -1, lineType=cv2.LINE_AA)
        cv2.rectangle(mask, (round(cx - 0.95 * w), round(cy)), (round(cx + 0.95 * w), out.shape[0]), 255, -1)
        opening = (round(cx), round(cy + 0.08 * h)), (round(w * (0.5 - amount * 0.6)), round(h * (0.55 - amount * 0.4)))
        cv2.ellipse(mask, opening[0], opening[1], 0, 0, 360, 0, -1, lineType=cv2.LINE_AA)
        alpha = (mask.astype(np.float32) / 255.0)[..., None]
        fabric = np.empty_like(out)
        fabric[:] = colour
        out = (out.astype(np.float32) * (1 - alpha) + fabric.astype(np.float32) * alpha).astype(np.uint8)
    else:  # hand
        colour = _skin_colour(rng)
        over_eye = rng.random() < 0.3
        hx = cx + float(rng.uniform(-0.2, 0.2)) * w
        hy = y + h * (0.4 if over_eye else 0.78)
        size = (round(w * (0.3 + amount)), round(h * (0.18 + amount * 0.5)))
        tilt = float(rng.uniform(-35, 35))
        cv2.ellipse(out, (round(hx), round(hy)), size, tilt, 0, 360, colour, -1, lineType=cv2.LINE_AA)
        # Fingers: four rounded bars reaching up across the face.
        for k in range(4):
            fx = hx - size[0] * 0.75 + k * size[0] * 0.5
            top = hy - size[1] - h * float(rng.uniform(0.08, 0.2))
            cv2.line(out, (round(fx), round(hy)), (round(fx), round(top)), colour, max(1, round(w * 0.09)), cv2.LINE_AA)
        if min(out.shape[:2]) > 8:
            out = np.asarray(cv2.GaussianBlur(out, (3, 3), 0), dtype=np.uint8)
    return out


# -- optics, motion, sensor and encoding ----------------------------------------------------------


def motion_blur(image: Image, rng: np.random.Generator, length: float | Range = (3.0, 7.0)) -> Image:
    """Linear motion blur of ``length`` px at a random angle."""
    n = _draw(rng, length)
    if n < 1.5:
        return image
    size = math.ceil(n) | 1
    kernel = np.zeros((size * 4, size * 4), np.float32)  # drawn at 4x, then reduced: sub-pixel lengths
    angle = float(rng.uniform(0, math.pi))
    c = (size * 4 - 1) / 2.0
    dx, dy = math.cos(angle) * n * 2.0, math.sin(angle) * n * 2.0
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 2, cv2.LINE_AA)
    small = np.asarray(cv2.resize(kernel, (size, size), interpolation=cv2.INTER_AREA), dtype=np.float32)
    small /= max(float(small.sum()), 1e-6)
    return np.asarray(cv2.filter2D(image, -1, small, borderType=cv2.BORDER_REFLECT_101), dtype=np.uint8)


def defocus_blur(image: Image, rng: np.random.Generator, radius: float | Range = (1.0, 2.5)) -> Image:
    """Out-of-focus blur: convolution with an anti-aliased disk of ``radius`` px."""
    r = _draw(rng, radius)
    if r < 0.5:
        return image
    size = 2 * math.ceil(r) + 1
    big = np.zeros((size * 8, size * 8), np.float32)
    cv2.circle(big, (size * 4, size * 4), round(r * 8), 1.0, -1, cv2.LINE_AA)
    kernel = np.asarray(cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA), dtype=np.float32)
    kernel /= max(float(kernel.sum()), 1e-6)
    return np.asarray(cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT_101), dtype=np.uint8)


def low_light(
    image: Image,
    rng: np.random.Generator,
    gain: float | Range = (0.25, 0.5),
    noise: float | Range = (4.0, 10.0),
    mono: float = 0.3,
) -> Image:
    """Under-exposure with sensor noise: linear light times ``gain``, shot noise plus read noise of
    ``noise`` (8-bit units at full scale), re-encoded with the camera's gamma; with probability
    ``mono`` the camera has switched to a grey night mode."""
    g, sigma = _draw(rng, gain), _draw(rng, noise)
    linear = (image.astype(np.float32) / 255.0) ** 2.2 * g
    # Shot noise grows with the signal; read noise does not. Both in linear units.
    shot = rng.normal(0.0, 1.0, image.shape).astype(np.float32) * np.sqrt(linear) * (sigma / 255.0) * 2.0
    read = rng.normal(0.0, sigma / 255.0 * 0.25, image.shape).astype(np.float32)
    noisy = np.clip(linear + shot + read, 0.0, 1.0) ** (1.0 / 2.2)
    out: Image = np.asarray(noisy * 255.0 + 0.5, dtype=np.float32).astype(np.uint8)
    if rng.random() < mono:
        grey = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
        out = np.asarray(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    return out


def jpeg(image: Image, rng: np.random.Generator, quality: float | Range = (10.0, 40.0)) -> tuple[Image, bytes]:
    """Heavy JPEG compression at ``quality``; returns the decoded image and the encoded bytes."""
    q = round(_draw(rng, quality))
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(np.clip(q, 1, 100))])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise RuntimeError("JPEG encoding failed")
    data = encoded.tobytes()
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(decoded), data


# -- chains ---------------------------------------------------------------------------------------

Params = dict[str, float | Range]


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    params: Params = field(default_factory=dict)
    p: float = 1.0


@dataclass(slots=True)
class Degraded:
    """A degraded probe: the bytes to upload, the image they decode to, and where the face went."""

    data: bytes
    image: Image
    face: FaceGeometry
    applied: list[str]


# Camera order: a chain is sorted by this before it runs.
ORDER = ("rotate", "crop", "occlude", "downscale", "frame", "defocus", "motion", "lowlight", "jpeg")

# Each step's moderate default (what a bare step name means).
DEFAULTS: dict[str, Params] = {
    "rotate": {"angle": (-20.0, 20.0)},
    "crop": {"keep": (0.6, 0.8), "cut": (0.0, 0.15)},
    "occlude": {"extent": (0.2, 0.35)},
    "downscale": {"ied": (16.0, 28.0)},
    "frame": {"width": 1280.0, "height": 720.0},
    "defocus": {"radius": (1.0, 2.0)},
    "motion": {"length": (3.0, 6.0)},
    "lowlight": {"gain": (0.25, 0.5), "noise": (4.0, 10.0)},
    "jpeg": {"quality": (20.0, 35.0)},
}


def _steps(*items: tuple[str, float, Params]) -> tuple[Step, ...]:
    return tuple(Step(name, params, p) for name, p, params in items)


PRESETS: dict[str, tuple[Step, ...]] = {
    "clean": (),
    "mild": _steps(
        ("rotate", 0.4, {"angle": (-10.0, 10.0)}),
        ("crop", 0.3, {"keep": (0.7, 0.9), "cut": (0.0, 0.05)}),
        ("occlude", 0.1, {"extent": (0.15, 0.25)}),
        ("downscale", 1.0, {"ied": (28.0, 40.0)}),
        ("defocus", 0.3, {"radius": (0.8, 1.3)}),
        ("motion", 0.3, {"length": (2.0, 4.0)}),
        ("lowlight", 0.3, {"gain": (0.5, 0.8), "noise": (2.0, 5.0)}),
        ("jpeg", 1.0, {"quality": (30.0, 40.0)}),
    ),
    "moderate": _steps(
        ("rotate", 0.6, {"angle": (-20.0, 20.0)}),
        ("crop", 0.4, {"keep": (0.6, 0.8), "cut": (0.0, 0.1)}),
        ("occlude", 0.3, {"extent": (0.2, 0.3)}),
        ("downscale", 1.0, {"ied": (16.0, 28.0)}),
        ("defocus", 0.4, {"radius": (1.0, 1.8)}),
        ("motion", 0.5, {"length": (3.0, 5.0)}),
        ("lowlight", 0.5, {"gain": (0.3, 0.55), "noise": (4.0, 9.0)}),
        ("jpeg", 1.0, {"quality": (20.0, 35.0)}),
    ),
    # A retailer's 352x288 camera export: a small face, often moving or out of focus, dim, heavily compressed.
    "cctv": _steps(
        ("rotate", 0.6, {"angle": (-20.0, 20.0)}),
        ("crop", 0.3, {"keep": (0.6, 0.85), "cut": (0.0, 0.1)}),
        ("occlude", 0.2, {"extent": (0.15, 0.3)}),
        ("downscale", 1.0, {"ied": (12.0, 22.0)}),
        ("defocus", 0.4, {"radius": (1.0, 1.6)}),
        ("motion", 0.6, {"length": (3.0, 6.0)}),
        ("lowlight", 0.5, {"gain": (0.3, 0.6), "noise": (4.0, 10.0)}),
        ("jpeg", 1.0, {"quality": (15.0, 30.0)}),
    ),
    "severe": _steps(
        ("rotate", 0.7, {"angle": (-30.0, 30.0)}),
        ("crop", 0.5, {"keep": (0.55, 0.75), "cut": (0.0, 0.2)}),
        ("occlude", 0.5, {"extent": (0.25, 0.4)}),
        ("downscale", 1.0, {"ied": (8.0, 16.0)}),
        ("defocus", 0.5, {"radius": (1.2, 2.2)}),
        ("motion", 0.6, {"length": (4.0, 7.0)}),
        ("lowlight", 0.6, {"gain": (0.15, 0.35), "noise": (6.0, 14.0)}),
        ("jpeg", 1.0, {"quality": (10.0, 25.0)}),
    ),
}


def _parse_value(text: str) -> float | Range:
    if "~" in text:
        lo, hi = text.split("~", 1)
        return (float(lo), float(hi))
    return float(text)


def parse_condition(spec: str) -> tuple[Step, ...]:
    """A preset name, or steps joined by ``+`` (``name[:key=value]...``; ranges ``lo~hi``; ``p`` = probability)."""
    spec = spec.strip()
    if spec in PRESETS:
        return PRESETS[spec]
    steps = []
    for part in spec.split("+"):
        name, *pairs = part.strip().split(":")
        if name not in DEFAULTS:
            raise ValueError(f"unknown degradation {name!r}; known: {', '.join(ORDER)} or presets {', '.join(PRESETS)}")
        params: Params = dict(DEFAULTS[name])
        p = 1.0
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key == "p":
                p = float(value)
            elif key in DEFAULTS[name] or (name == "occlude" and key == "extent"):
                params[key] = _parse_value(value)
            else:
                raise ValueError(f"{name}: unknown parameter {key!r} (known: p, {', '.join(DEFAULTS[name])})")
        steps.append(Step(name, params, p))
    return tuple(sorted(steps, key=lambda s: ORDER.index(s.name)))


def describe(steps: tuple[Step, ...]) -> str:
    """A human-readable account of a chain, for the report."""
    if not steps:
        return "the file as supplied"

    def fmt(v: float | Range) -> str:
        return f"{v[0]:g}-{v[1]:g}" if isinstance(v, tuple) else f"{v:g}"

    parts = []
    for s in steps:
        params = ", ".join(f"{k} {fmt(v)}" for k, v in s.params.items())
        chance = "" if s.p >= 1.0 else f" (p={s.p:g})"
        parts.append(f"{s.name}[{params}]{chance}")
    return " → ".join(parts)


def _apply_step(step: Step, state: Degraded, rng: np.random.Generator) -> Degraded:
    image, face = state.image, state.face
    kw: dict[str, Any] = dict(step.params)
    geometric: dict[str, Callable[..., tuple[Image, FaceGeometry]]] = {
        "rotate": rotate,
        "crop": off_centre_crop,
        "downscale": downscale,
        "frame": frame,
    }
    data = b""
    if step.name in geometric:
        image, face = geometric[step.name](image, face, rng, **kw)
    elif step.name == "occlude":
        image = occlude(image, face, rng, **kw)
    elif step.name == "defocus":
        image = defocus_blur(image, rng, **kw)
    elif step.name == "motion":
        image = motion_blur(image, rng, **kw)
    elif step.name == "lowlight":
        image = low_light(image, rng, **kw)
    elif step.name == "jpeg":
        image, data = jpeg(image, rng, **kw)
    return Degraded(data=data, image=image, face=face, applied=[*state.applied, step.name])


def apply_chain(
    steps: tuple[Step, ...], original: bytes, image: Image, face: FaceGeometry, rng: np.random.Generator
) -> Degraded:
    """Run a chain on one decoded still. With no step the original bytes are kept unchanged.

    Every step draws from ``rng`` whether or not it fires, so adding a step to a chain does not
    shift the random draws of the others' decisions.
    """
    state = Degraded(data=original, image=image, face=face, applied=[])
    if not steps:
        return state
    for step in steps:
        fires = rng.random() < step.p
        sub = np.random.default_rng(rng.integers(2**63))
        if fires:
            state = _apply_step(step, state, sub)
    if not state.applied:
        return state  # nothing fired: the file as supplied
    if state.applied[-1] != "jpeg":
        ok, encoded = cv2.imencode(".png", state.image)
        if not ok:  # pragma: no cover
            raise RuntimeError("PNG encoding failed")
        state = replace(state, data=encoded.tobytes())
    return state


def probe_rng(seed: int, condition: str, key: str) -> np.random.Generator:
    """A generator fixed by (seed, condition, probe), independent of the order probes are processed in."""
    import hashlib

    digest = hashlib.sha256(f"{seed}|{condition}|{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def degrade_file(
    data: bytes, steps: tuple[Step, ...], rng: np.random.Generator, face: FaceGeometry | None = None
) -> Degraded:
    """Decode a still (BGR, EXIF ignored as LFW has none), locate the nominal face and run a chain."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("cannot decode image")
    geometry = face or FaceGeometry.nominal(image.shape[1], image.shape[0])
    return apply_chain(steps, data, np.ascontiguousarray(image), geometry, rng)
