"""Synthetic chest films: a few anatomy templates per seed, varied per image with cheap operations.

A template is a float image in [0, 1] built from smooth analytic shapes (body envelope, shoulders,
lungs with domed diaphragms, heart, mediastinum, trachea, clavicles, ribs, vessels fanning out of the
hila, a gastric bubble).  Every image takes one template, crops it with a small random offset, maps it
through a random gamma/gain curve, adds film noise from a per-seed noise bank (amplitude following the
grey level, none in clipped black) and sometimes a side marker or black border bars.  PNGs are encoded
with ``compress_level=1``, which gives the real files' 300-450 KB at 1024x1024 in about 40 ms.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, PngImagePlugin

F32 = NDArray[np.floating[Any]]  # float32 at run time
U8 = NDArray[np.uint8]

#: Number of anatomy templates per (seed, size); each image picks one.
TEMPLATES = 4
#: PNG zlib level: 1 is fast and, with the noise below, gives the real files' sizes.
PNG_COMPRESS_LEVEL = 1
#: Film-noise standard deviation in grey levels at mid-grey, before the per-image factor.
NOISE_SIGMA = 0.6
#: Image modes the generator can write (the real dataset's ``L`` plus its RGBA and 2-channel oddities).
IMAGE_MODES = ("L", "RGBA", "LA")
_STREAM_TEMPLATES, _STREAM_IMAGES = 1, 2
_XMP = (
    '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about=""/></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)


def _ss(e0: float, e1: float, x: F32) -> F32:
    """Smoothstep from ``e0`` to ``e1`` (``e0 > e1`` gives a falling edge)."""
    t: F32 = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    smooth: F32 = t * t * (3.0 - 2.0 * t)
    return smooth


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> F32:
    """Gaussian noise on a ``cells`` grid, bicubically upsampled to ``size`` x ``size``."""
    small = rng.standard_normal((cells, cells), dtype=np.float32)
    big = Image.fromarray(small, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    noise: F32 = np.asarray(big, dtype=np.float32)
    return noise


@dataclass(frozen=True)
class _Grid:
    u: F32  # horizontal, -1 (image left, patient's right) .. 1
    v: F32  # vertical, 0 (top) .. 1
    size: int


def _grid(size: int) -> _Grid:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return _Grid(u=(x + 0.5) / size * 2.0 - 1.0, v=(y + 0.5) / size, size=size)


def _body(rng: np.random.Generator, g: _Grid) -> F32:
    """Soft-tissue envelope: neck, sloping shoulders, flanks; 1 inside, 0 in the air around."""
    au = np.abs(g.u)
    shoulder = rng.uniform(0.02, 0.07) + rng.uniform(0.3, 0.45) * np.clip(au - 0.25, 0.0, None) ** 1.6
    side = rng.uniform(0.92, 1.06) - rng.uniform(0.0, 0.08) * g.v
    body = _ss(-0.05, 0.05, g.v - shoulder) * _ss(-0.06, 0.06, side - au)
    return np.maximum(body, _ss(0.24, 0.16, au))


def _heart(rng: np.random.Generator, g: _Grid) -> F32:
    """A tilted ellipse bulging to the image right (the patient's left)."""
    cx, cy = rng.uniform(0.08, 0.15), rng.uniform(0.63, 0.69)
    rx, ry, angle = rng.uniform(0.29, 0.36), rng.uniform(0.17, 0.21), rng.uniform(0.25, 0.45)
    ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    hu = (g.u - cx) * ca + (g.v - cy) * sa
    hv = -(g.u - cx) * sa + (g.v - cy) * ca
    return _ss(1.0, 0.85, np.hypot(hu / rx, hv / ry))


def _polar_ridges(rng: np.random.Generator, xp: F32, v: F32, cells: tuple[int, int], warp: F32) -> F32:
    """Ridged noise in polar coordinates around the hilum: branching streaks fanning outwards."""
    r = np.hypot(xp - 0.2, v - 0.46)
    theta = np.arctan2(v - 0.46, xp - 0.2) + warp * 0.5 * np.minimum(r, 0.5)
    na, nr = cells
    table = rng.standard_normal((na + 1, nr + 1), dtype=np.float32)
    a = (theta + np.pi) / (2 * np.pi) * na
    b = np.clip(r / 0.8, 0.0, 1.0) * nr
    a0, b0 = np.minimum(a.astype(np.int32), na - 1), np.minimum(b.astype(np.int32), nr - 1)
    fa, fb = _ss(0.0, 1.0, a - a0.astype(np.float32)), _ss(0.0, 1.0, b - b0.astype(np.float32))
    val = (table[a0, b0] * (1 - fa) + table[a0 + 1, b0] * fa) * (1 - fb)
    val += (table[a0, b0 + 1] * (1 - fa) + table[a0 + 1, b0 + 1] * fa) * fb
    ridges: F32 = _ss(0.7, 0.97, 1 - np.abs(val)) * np.exp(-r / 0.3) * _ss(0.02, 0.08, r)
    return ridges


@dataclass(frozen=True)
class _Side:
    lung: F32
    ribs: F32
    bones: F32
    vessels: F32
    below: F32


def _bones(rng: np.random.Generator, xp: F32, v: F32) -> F32:
    """Clavicle and humeral head of one side."""
    clav_v = rng.uniform(0.2, 0.25) - 0.3 * xp + 0.22 * xp**2
    bones = 0.1 * _ss(0.03, 0.015, np.abs(v - clav_v)) * _ss(0.06, 0.12, xp) * _ss(0.75, 0.6, xp)
    humerus = np.hypot((xp - rng.uniform(0.93, 1.0)) / 0.13, (v - rng.uniform(0.14, 0.2)) / 0.14)
    return bones + 0.16 * _ss(1.0, 0.8, humerus)


def _ribs(xp: F32, v: F32, p: dict[str, float]) -> F32:
    """Posterior ribs arcing down laterally, fainter anterior ribs sloping down medially."""
    phase = p["freq"] * 1.6 * np.clip(v - p["curv"] * xp**2 + 0.06 * xp - 0.02, 0.0, None) ** 0.85
    post = _ss(0.15, 0.7, np.cos(2 * np.pi * phase))
    ant = _ss(0.55, 0.9, np.cos(2 * np.pi * p["freq"] * 0.95 * (v + 0.22 * xp) + 1.0))
    return (0.085 * post + 0.035 * ant) * _ss(0.1, 0.2, xp) * _ss(0.9, 0.7, v)


def _side(rng: np.random.Generator, g: _Grid, sgn: float, heart: F32, p: dict[str, float]) -> _Side:
    """One half of the grid (``sgn`` -1: image left, +1: image right): lung, ribs, bones, vessels."""
    xp, v = sgn * g.u, g.v
    half = (xp > 0).astype(np.float32)
    knob = 0.07 * np.exp(-(((v - 0.33) / 0.045) ** 2)) if sgn > 0 else 0.0
    medial = 0.13 + 0.03 * _ss(0.2, 0.45, v) + knob
    lateral = 0.14 + (p["lat"] - 0.14) * np.sqrt(np.clip((v - p["apex"]) / 0.42, 0.0, 1.0))
    base = p["d0"] + (0.02 if sgn > 0 else 0.0) - p["dome"] * (1 - ((xp - 0.45) / 0.45) ** 2)
    lung = _ss(0.0, 0.05, xp - medial) * _ss(0.0, 0.06, lateral - xp) * _ss(0.0, 0.04, base - v)
    lung *= _ss(0.0, 0.05, v - p["apex"]) * half * (1 - heart)
    warp = _smooth_noise(rng, g.size, 14)[:, : xp.shape[1]]
    vessels = 0.8 * _polar_ridges(rng, xp, v, (60, 6), warp)
    vessels += 0.5 * _polar_ridges(rng, xp, v, (140, 10), warp)
    below = _ss(-0.02, 0.1, v - base)
    if sgn > 0 and rng.random() < 0.7:
        bubble = np.hypot((xp - rng.uniform(0.35, 0.5)) / 0.12, (v - base - 0.07) / 0.05)
        below -= 0.6 * _ss(1.0, 0.6, bubble)
    bones = _bones(rng, xp, v)
    return _Side(lung, _ribs(xp, v, p) * half, bones * half, vessels * half, below * half)


def _halves(rng: np.random.Generator, g: _Grid, heart: F32, p: dict[str, float]) -> _Side:
    """Both hemithoraces, each computed on its own half of the grid and joined."""
    mid = g.size // 2
    left = _side(rng, _Grid(g.u[:, :mid], g.v[:, :mid], g.size), -1.0, heart[:, :mid], p)
    right = _side(rng, _Grid(g.u[:, mid:], g.v[:, mid:], g.size), 1.0, heart[:, mid:], p)
    fields = ("lung", "ribs", "bones", "vessels", "below")
    return _Side(*(np.hstack([getattr(left, f), getattr(right, f)]) for f in fields))


def _template(rng: np.random.Generator, size: int) -> F32:
    """One anatomy template, float32 in [0, 1]."""
    g = _grid(size)
    au = np.abs(g.u)
    body = _body(rng, g)
    names = ("apex", "d0", "dome", "lat", "freq", "curv")
    lows, highs = (0.1, 0.77, 0.05, 0.78, 5.5, 0.28), (0.15, 0.83, 0.08, 0.86, 6.5, 0.38)
    p = {n: float(rng.uniform(lo, hi)) for n, lo, hi in zip(names, lows, highs, strict=True)}
    both = _halves(rng, g, _heart(rng, g), p)
    hilum = np.exp(-(((au - 0.22) / 0.12) ** 2 + ((g.v - 0.47) / 0.12) ** 2))
    dark = rng.uniform(0.36, 0.46) * (1 - 0.3 * _ss(0.45, 0.85, g.v)) * (1 - 0.2 * _ss(0.6, 0.95, au))
    dark += 0.03 * _smooth_noise(rng, size, 30) - 0.1 * hilum
    img = 0.04 + body * (0.7 - 0.12 * _ss(0.75, 1.0, au) + both.bones)
    img += body * (0.12 * both.below * (1 - both.lung) + both.ribs * (0.2 + 0.8 * both.lung))
    img += both.lung * (0.11 * both.vessels - dark)
    img -= 0.06 * body * _ss(0.045, 0.025, au) * _ss(0.4, 0.3, g.v)  # trachea
    img += 0.05 * _smooth_noise(rng, size, 5) + 0.01 * _smooth_noise(rng, size, min(90, size))
    return np.clip(img, 0.0, 1.0)


class FilmFactory:
    """Renders the synthetic films of one (seed, size): ``factory.png(index, mode)`` -> PNG bytes.

    Templates and the noise bank are built once per factory; each image's randomness comes only from
    ``default_rng([seed, stream, index])``, so an image's bytes do not depend on which process renders it
    or in what order.
    """

    def __init__(self, seed: int, size: int) -> None:
        """Build the templates (with a margin for random crops) and the noise bank for ``seed``/``size``."""
        self.seed, self.size = seed, size
        self.margin = max(1, size // 32)
        rng = np.random.default_rng([seed, _STREAM_TEMPLATES, size])
        side = size + 2 * self.margin
        self.templates = [np.round(_template(rng, side) * 255).astype(np.uint8) for _ in range(TEMPLATES)]
        bank = rng.standard_normal((size + size // 2, size + size // 4), dtype=np.float32) * 16
        self.noise = np.clip(bank, -127, 127).astype(np.int16)

    def pixels(self, index: int) -> U8:
        """The grey pixels (``size`` x ``size``, uint8) of image number ``index``."""
        rng = np.random.default_rng([self.seed, _STREAM_IMAGES, index])
        s, m = self.size, self.margin
        dy, dx = (int(d) for d in rng.integers(0, 2 * m + 1, size=2))
        template = self.templates[int(rng.integers(TEMPLATES))][dy : dy + s, dx : dx + s]
        levels = np.linspace(0.0, 1.0, 256)
        gain, offset = rng.uniform(0.98, 1.1), rng.uniform(0.0, 20.0)
        lut = np.clip(255 * levels ** rng.uniform(0.85, 1.2) * gain - offset, 0, 255).astype(np.int16)
        base = lut[template]
        amp_curve = _ss(0.0, 0.25, levels.astype(np.float32)) * (1 - 0.4 * levels)
        amp = (amp_curve * NOISE_SIGMA * 16 * rng.uniform(0.6, 1.5)).astype(np.int16)
        ny, nx = int(rng.integers(0, s // 2 + 1)), int(rng.integers(0, s // 4 + 1))
        out = base + ((self.noise[ny : ny + s, nx : nx + s] * amp[base] + 128) >> 8)
        film = np.clip(out, 0, 255).astype(np.uint8)
        _decorate(rng, film)
        return film

    def png(self, index: int, mode: str = "L") -> bytes:
        """Image ``index`` encoded as PNG in ``mode`` (``L``, or the quirky ``RGBA``/``LA``, same grey)."""
        return encode_png(self.pixels(index), mode)


def _decorate(rng: np.random.Generator, film: U8) -> None:
    """In place: sometimes black border bars (cropped films) and a bright side marker in a top corner."""
    s = film.shape[0]
    if rng.random() < 0.12:
        top, bottom = (int(t) for t in rng.integers(0, s // 25 + 1, size=2))
        film[:top] = 0
        film[s - bottom :] = 0
    if rng.random() < 0.7:
        w = max(2, s // 40)
        x0 = (
            int(rng.integers(s // 40, s // 10))
            if rng.random() < 0.5
            else s - 3 * w - int(rng.integers(s // 40, s // 10))
        )
        y0 = int(rng.integers(s // 40, s // 10))
        value = int(rng.integers(225, 256))
        film[y0 : y0 + 4 * w, x0 : x0 + w] = value
        film[y0 + 3 * w : y0 + 4 * w, x0 : x0 + 3 * w] = value


def encode_png(grey: U8, mode: str = "L") -> bytes:
    """Encode grey pixels as PNG; ``RGBA`` repeats the grey in R, G, B (alpha 255, with an XMP packet),
    ``LA`` adds an opaque alpha channel."""
    info: PngImagePlugin.PngInfo | None = None
    if mode == "L":
        image = Image.fromarray(grey, mode="L")
    elif mode == "RGBA":
        opaque = np.full_like(grey, 255)
        image = Image.fromarray(np.dstack([grey, grey, grey, opaque]), mode="RGBA")
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", _XMP)
    elif mode == "LA":
        image = Image.fromarray(np.dstack([grey, np.full_like(grey, 255)]), mode="LA")
    else:
        raise ValueError(f"unknown image mode {mode!r}; expected one of {IMAGE_MODES}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, pnginfo=info)
    return buffer.getvalue()


@lru_cache(maxsize=2)
def factory(seed: int, size: int) -> FilmFactory:
    """A cached :class:`FilmFactory` (building one takes ~2 s at 1024)."""
    return FilmFactory(seed, size)


# ---- process-pool plumbing: each worker builds its own factory once -------------------------------

_WORKER: dict[str, FilmFactory] = {}


def init_worker(seed: int, size: int) -> None:
    """Pool initializer: build this worker's factory."""
    _WORKER["factory"] = factory(seed, size)


def render_task(task: tuple[int, str]) -> bytes:
    """Pool task: ``(index, mode)`` -> PNG bytes, using the worker's factory."""
    if "factory" not in _WORKER:
        raise RuntimeError("render_task called outside a worker initialised by init_worker")
    return _WORKER["factory"].png(*task)
