"""Chest-radiograph-like images drawn with numpy: anatomy, findings and devices.

Findings are large-scale on purpose (heart width, a bright fluid level at a lung base, lung
haze, dense patches) so a small CNN learns them at 64-128 px within a few epochs. Shapes are
drawn at a working resolution of at most WORK_WIDTH pixels, resized to the requested size, and
grain is added at full size, so 2500x3000 benchmark images stay cheap. Each image has its own
seed, so the pixels do not depend on the number of worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

WORK_WIDTH = 128
FRONTAL_VIEWS = ("AP", "PA")


@dataclass(frozen=True)
class Findings:
    """What one radiograph shows; sizes are in units of the half-width of the image."""

    heart_ctr: float          # cardiothoracic ratio (normal < 0.5)
    haze: float               # diffuse lung opacification (radiographic burden), 0..1 x amplitude
    effusion_left: float      # fluid height at the patient's left base (0 = none)
    effusion_right: float
    consolidation: float      # intensity of dense patches (0 = none)
    edema: float              # perihilar haze intensity
    pneumothorax: bool
    nodule: bool
    hyperinflation: float     # lowered diaphragm (COPD)
    ett: bool
    central_line: bool
    pacemaker: bool
    sternotomy: bool
    tracheostomy: bool


class Canvas:
    """Normalized coordinates: x in [-1, 1] (image left = patient's right), y in [0, aspect]."""

    def __init__(self, width: int, height: int, shift: tuple[float, float]) -> None:
        self.aspect = height / width
        xs = np.linspace(-1, 1, width, dtype=np.float32) - shift[0]
        ys = np.linspace(0, 2 * self.aspect, height, dtype=np.float32) / 2 - shift[1]
        self.x, self.y = np.meshgrid(xs, ys / self.aspect)  # y in [0, 1] top to bottom
        self.pixel = 2.0 / width

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, edge: float = 0.04) -> np.ndarray:
        r = ((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2
        return np.clip((1 - r) / edge, 0, 1)

    def gaussian(self, cx: float, cy: float, sigma: float) -> np.ndarray:
        return np.exp(-((self.x - cx) ** 2 + (self.y - cy) ** 2) / (2 * sigma ** 2))

    def segment(self, p0: tuple[float, float], p1: tuple[float, float], width: float) -> np.ndarray:
        (x0, y0), (x1, y1) = p0, p1
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((self.x - x0) * dx + (self.y - y0) * dy) / (dx * dx + dy * dy), 0, 1)
        dist = np.hypot(self.x - (x0 + t * dx), self.y - (y0 + t * dy))
        return np.clip((width - dist) / max(self.pixel, 1e-3), 0, 1)

    def box(self, cx: float, cy: float, hx: float, hy: float) -> np.ndarray:
        return ((np.abs(self.x - cx) < hx) & (np.abs(self.y - cy) < hy)).astype(np.float32)


def _texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Low-frequency mottling (vessels, ribs' shadows), upsampled from a coarse grid."""
    coarse = rng.normal(size=(14, 12)).astype(np.float32)
    image = Image.fromarray(coarse, mode="F").resize((width, height), Image.BILINEAR)
    return np.asarray(image)


def _frontal(c: Canvas, f: Findings, rng: np.random.Generator, texture: np.ndarray) -> np.ndarray:
    img = np.full(c.x.shape, 12.0, dtype=np.float32)
    img += 95 * c.ellipse(0, 0.58, 0.95, 0.62)
    lungs = np.zeros_like(img)
    for side, cx in (("right", -0.40), ("left", 0.40)):
        dome = 0.77 + f.hyperinflation - 0.07 * np.clip(1 - ((c.x - cx) / 0.3) ** 2, 0, 1)
        lung = c.ellipse(cx, 0.47, 0.31, 0.36) * (c.y < dome)
        lungs = np.maximum(lungs, lung)
        fluid = f.effusion_left if side == "left" else f.effusion_right
        if fluid > 0:  # meniscus: higher laterally, blunting the costophrenic angle
            level = dome - fluid - 0.6 * fluid * np.abs(c.x - cx) / 0.31
            lungs = np.where((c.y > level) & (lung > 0), lungs * 0.15, lungs)
    img -= 72 * lungs
    img += 9 * texture * lungs
    img += 40 * ((np.abs(c.x) < 0.07) & (c.y > 0.05) & (c.y < 0.95))
    heart_rx = f.heart_ctr * 0.71
    heart = c.ellipse(0.1, 0.64, heart_rx, 0.15 + 0.15 * f.heart_ctr)
    img = img * (1 - heart) + 168 * heart
    lung_top, lung_bottom = 0.11, 0.80
    basal = np.clip((c.y - lung_top) / (lung_bottom - lung_top), 0, 1)
    img += lungs * 65 * f.haze * (0.4 + 0.6 * basal)
    if f.edema > 0:
        img += lungs * f.edema * (c.gaussian(-0.2, 0.5, 0.18) + c.gaussian(0.2, 0.5, 0.18))
    if f.consolidation > 0:
        for _ in range(int(rng.integers(1, 3))):
            cx = rng.choice([-1, 1]) * rng.uniform(0.25, 0.5)
            img += lungs * f.consolidation * c.gaussian(cx, rng.uniform(0.35, 0.7), rng.uniform(0.07, 0.12))
    if f.pneumothorax:
        cx = rng.choice([-0.45, 0.45])
        apex = c.ellipse(cx, 0.2, 0.2, 0.13) * lungs
        img = img * (1 - apex) + 8 * apex
    if f.nodule:
        img += 95 * lungs * c.gaussian(rng.choice([-1, 1]) * rng.uniform(0.25, 0.5), rng.uniform(0.25, 0.6), 0.03)
    device = np.zeros_like(img)
    if f.ett:
        device = np.maximum(device, c.segment((0.0, 0.0), (0.0, 0.36), 0.012))
    if f.tracheostomy:
        device = np.maximum(device, c.segment((0.0, 0.08), (0.0, 0.22), 0.03))
    if f.central_line:
        device = np.maximum(device, c.segment((-0.6, 0.12), (-0.05, 0.45), 0.006))
    if f.pacemaker:
        device = np.maximum(device, c.box(0.5, 0.18, 0.09, 0.05))
        device = np.maximum(device, c.segment((0.45, 0.2), (0.12, 0.62), 0.006))
    if f.sternotomy:
        for y in (0.32, 0.38, 0.44, 0.5, 0.56):
            device = np.maximum(device, c.ellipse(0.0, y, 0.03, 0.012, edge=0.3))
    return np.maximum(img, 235 * device)


def _lateral(c: Canvas, f: Findings, rng: np.random.Generator, texture: np.ndarray) -> np.ndarray:
    img = np.full(c.x.shape, 12.0, dtype=np.float32)
    img += 100 * c.ellipse(0, 0.56, 0.85, 0.62)
    lung = c.ellipse(0.05, 0.46, 0.55, 0.37) * (c.y < 0.8 + f.hyperinflation)
    fluid = max(f.effusion_left, f.effusion_right)
    if fluid > 0:
        lung = np.where((c.y > 0.8 - 1.5 * fluid) & (c.x > 0.15), lung * 0.15, lung)
    img -= 70 * lung
    img += 9 * texture * lung
    heart = c.ellipse(-0.3, 0.62, f.heart_ctr * 0.55, 0.2)
    img = img * (1 - heart) + 160 * heart
    img += 60 * ((c.x > 0.55) & (c.x < 0.68) & (c.y > 0.05))
    img += lung * 65 * f.haze
    if f.ett:
        img = np.maximum(img, 235 * c.segment((-0.4, 0.0), (-0.3, 0.36), 0.012))
    return img


RENDERERS = {"frontal": _frontal, "lateral": _lateral}


def render(findings: Findings, view: str, width: int, height: int, seed: tuple[int, ...]) -> np.ndarray:
    """One uint8 (height, width) radiograph; the same inputs always give the same pixels."""
    rng = np.random.default_rng(seed)
    work_w = min(width, WORK_WIDTH)
    work_h = max(1, int(round(height * work_w / width)))
    canvas = Canvas(work_w, work_h, shift=(rng.normal(0, 0.03), rng.normal(0, 0.02)))
    kind = "frontal" if view in FRONTAL_VIEWS else "lateral"
    img = RENDERERS[kind](canvas, findings, rng, _texture(rng, work_w, work_h))
    img = img * rng.normal(1.0, 0.06) + rng.normal(0, 5)
    if (work_w, work_h) != (width, height):
        img = np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))
    img = img + rng.normal(0, 4, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def save_jpeg(pixels: np.ndarray, path: str | Path, quality: int) -> None:
    Image.fromarray(pixels, mode="L").save(path, format="JPEG", quality=quality, optimize=False)
