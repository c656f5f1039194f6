"""Darknet's image loading and stretch resize in numpy (float32), for the Python tools.

Mirrors (AlexeyAB/darknet 59596d7, src/image.c):
  * `load_image(path, 0, 0, 3)` (stb_image build): 8-bit RGB, value/255, CHW float32.
    Difference: the JPEG is decoded with OpenCV's libjpeg (cv2.imread), not stb_image; the two decoders may differ by
    a few 8-bit levels on some pixels (IDCT / chroma upsampling). EXIF orientation is ignored, as stb_image does.
  * `resize_image(im, w, h)`: separable bilinear, horizontal pass first into an (w x im.h) buffer, then vertical;
    `w_scale = (im.w-1)/(w-1)`, `sx = c*w_scale`, `ix = (int)sx`, `dx = sx-ix`,
    `part = (1-dx)*im[ix] + dx*im[ix+1]`, last column copied from the last source column; vertically
    `out = (1-dy)*part[iy]`, then `+= dy*part[iy+1]` except on the last row. All in float32 like the C code
    (the C build may contract a*b+c into an FMA; that changes results by at most 1 ulp).
"""

from __future__ import annotations

import numpy as np


def load_image_rgb(path: str) -> np.ndarray:
    """HWC uint8 RGB, EXIF orientation ignored (stb_image does not apply it)."""
    import cv2

    bgr = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise ValueError(f"{path}: cannot decode image")
    return bgr[:, :, ::-1].copy()


def to_chw_float(rgb: np.ndarray) -> np.ndarray:
    """load_image: uint8 HWC -> float32 CHW / 255."""
    return (rgb.astype(np.float32) / np.float32(255.0)).transpose(2, 0, 1).copy()


def resize_image(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """Darknet resize_image on a float32 CHW array."""
    c, ih, iw = im.shape
    if (iw, ih) == (w, h):
        return im.copy()
    im = im.astype(np.float32, copy=False)
    one = np.float32(1.0)
    # horizontal pass
    w_scale = np.float32(iw - 1) / np.float32(w - 1) if w > 1 else np.float32(0)
    part = np.empty((c, ih, w), np.float32)
    cols = np.arange(w - 1, dtype=np.int64)
    sx = cols.astype(np.float32) * w_scale
    ix = sx.astype(np.int64)
    dx = (sx - ix.astype(np.float32)).astype(np.float32)
    if iw == 1:
        part[:] = im[:, :, :1]
    else:
        part[:, :, : w - 1] = (one - dx) * im[:, :, ix] + dx * im[:, :, ix + 1]
        part[:, :, w - 1] = im[:, :, iw - 1]
    # vertical pass
    h_scale = np.float32(ih - 1) / np.float32(h - 1) if h > 1 else np.float32(0)
    rows = np.arange(h, dtype=np.int64)
    sy = rows.astype(np.float32) * h_scale
    iy = sy.astype(np.int64)
    dy = (sy - iy.astype(np.float32)).astype(np.float32)
    out = (one - dy)[None, :, None] * part[:, iy, :]
    if ih > 1:
        r = rows[:-1]
        out[:, r, :] += dy[r][None, :, None] * part[:, np.minimum(iy[r] + 1, ih - 1), :]
    return out.astype(np.float32)


def darknet_input(path: str, w: int, h: int) -> tuple[np.ndarray, int, int]:
    """(3 x h x w float32 tensor, image_w, image_h) exactly as `detector test` builds it with letter_box=0."""
    rgb = load_image_rgb(path)
    ih, iw = rgb.shape[:2]
    return resize_image(to_chw_float(rgb), w, h), iw, ih
