"""How a chart's colours look to a reader with deuteranopia, and how far apart they are.

``deuteranope`` simulates deuteranopia (full severity) with the matrix of Machado, Oliveira &
Fernandes (2009, "A physiologically-based model for simulation of color vision deficiency",
IEEE TVCG 15(6)), applied to linear RGB; ``delta_e`` is the CIE 1976 colour difference (the
Euclidean distance in CIELAB, D65 white): about 2 is just noticeable, 20 and more reads as a
different colour at a glance.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import to_rgb

__all__ = ["deuteranope", "deuteranope_image", "delta_e", "lab"]

# Machado et al. 2009, Table 1, deuteranomaly at severity 1.0 (deuteranopia), on linear RGB.
MACHADO_DEUTERANOPIA = np.array(
    [
        [0.367322, 0.860646, -0.227968],
        [0.280085, 0.672501, 0.047413],
        [-0.011820, 0.042940, 0.968881],
    ]
)
# linear sRGB -> CIE XYZ (D65), and the D65 white
_SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_D65 = np.array([0.95047, 1.0, 1.08883])


def _linear(srgb: np.ndarray) -> np.ndarray:
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _encoded(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def deuteranope(colour) -> np.ndarray:
    """The sRGB colour (0-1) a deuteranope sees for ``colour`` (any matplotlib colour)."""
    return _encoded(MACHADO_DEUTERANOPIA @ _linear(np.asarray(to_rgb(colour))))


def deuteranope_image(rgb: np.ndarray) -> np.ndarray:
    """An image (H x W x 3 or 4, floats 0-1 or uint8) as a deuteranope sees it (same shape
    and type, alpha kept)."""
    scale = 255.0 if rgb.dtype == np.uint8 else 1.0
    colours = rgb[..., :3].astype("float64") / scale
    seen = _encoded(_linear(colours) @ MACHADO_DEUTERANOPIA.T)
    out = rgb.astype("float64").copy() / scale
    out[..., :3] = seen
    return (out * scale).round().astype(np.uint8) if scale == 255.0 else out


def lab(colour) -> np.ndarray:
    """CIELAB (D65) of an sRGB colour (any matplotlib colour, or an RGB triple 0-1)."""
    xyz = _SRGB_TO_XYZ @ _linear(np.asarray(to_rgb(colour), dtype="float64")) / _D65
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def delta_e(a, b) -> float:
    """CIE 1976 colour difference of two colours."""
    return float(np.linalg.norm(lab(a) - lab(b)))
