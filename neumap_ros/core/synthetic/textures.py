# Copyright 2026 neumap_ros contributors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
Surface textures: procedural materials, photographs shipped inside scikit-image, decals.

A texture is made for one face at a known texel size (metres per texel), so bricks, tiles,
letters and posters get their physical sizes. ``make_texture`` returns uint8 BGR;
``build_pyramid`` adds the mip levels the renderer filters with. All randomness comes from the
``numpy.random.Generator`` passed in.
"""

import colorsys
import functools
import math
import os
import struct
from typing import Optional

import cv2
import numpy as np

# Texture styles per kind of surface; the layout picks from these lists.
STYLES = {
    'wall': ('paint', 'paint', 'paint', 'wallpaper', 'brick', 'tile', 'wood_panel', 'concrete',
             'collage'),
    'floor': ('wood_floor', 'floor_tile', 'carpet', 'concrete', 'floor_tile', 'wood_floor'),
    'ceiling': ('ceiling',),
    'object': ('wood', 'painted', 'collage', 'books', 'fabric', 'metal', 'cardboard', 'poster',
               'wood', 'painted'),
    'small': ('cardboard', 'books', 'poster', 'painted', 'metal', 'text'),
    'board': ('poster', 'collage', 'wood', 'text', 'poster'),
    'soft': ('fabric',),
    'facade': ('facade_brick', 'facade_concrete', 'facade_paint', 'facade_glass',
               'facade_brick', 'facade_paint'),
    'ground': ('asphalt', 'paving', 'grass', 'gravel', 'paving', 'asphalt'),
    'outdoor_object': ('concrete', 'metal', 'painted', 'poster', 'wood', 'collage'),
}

# Photographs bundled in the scikit-image wheel: pictures (posters, reflections) and materials.
PICTURE_PHOTOS = ('astronaut.png', 'camera.png', 'chelsea.png', 'coffee.png', 'coins.png',
                  'hubble_deep_field.jpg', 'ihc.png', 'motorcycle_left.png', 'rocket.jpg',
                  'retina.jpg', 'logo.png', 'page.png', 'text.png', 'moon.png', 'horse.png',
                  'clock_motion.png')
MATERIAL_PHOTOS = ('brick.png', 'grass.png', 'gravel.png', 'moon.png')

_WORDS = ('EXIT', 'OPEN', 'LAB', 'ROOM', 'CAFE', 'BAR', 'NO', 'PARKING', 'STOP', 'SALE', 'HOTEL',
          'BANK', 'PHARMACY', 'BAKERY', 'BOOKS', 'OFFICE', 'PRIVATE', 'FIRE', 'DOOR', 'PUSH',
          'PULL', 'INFO', 'MARKET', 'TAXI', 'METRO', 'SHOP', 'NEWS', 'STORE', 'ZONE', 'DANGER')
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
          cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
          cv2.FONT_ITALIC | cv2.FONT_HERSHEY_SIMPLEX)


def style_texel_factor(style: str) -> float:
    """Relative texel size of a style (ground is seen from further away than it is wide)."""
    return 1.4 if style in STYLES['ground'] else 1.0


def _skimage_data_dir() -> Optional[str]:
    try:
        import skimage
    except ImportError:
        return None
    return os.path.join(os.path.dirname(skimage.__file__), 'data')


def _read_png_without_icc(path: str) -> Optional[np.ndarray]:
    """Decode an image, dropping PNG iCCP chunks (libpng warns about some broken profiles)."""
    with open(path, 'rb') as handle:
        data = handle.read()
    if data[:8] == b'\x89PNG\r\n\x1a\n':
        out, pos = [data[:8]], 8
        while pos + 8 <= len(data):
            length, = struct.unpack('>I', data[pos:pos + 4])
            end = pos + 12 + length
            if data[pos + 4:pos + 8] != b'iCCP':
                out.append(data[pos:end])
            pos = end
        data = b''.join(out)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return image


@functools.lru_cache(maxsize=None)
def _photos(names: tuple) -> tuple:
    """Mip pyramids (float32 BGR in [0, 1]) of the named photographs; missing ones skipped."""
    root = _skimage_data_dir()
    images = []
    for name in names:
        path = os.path.join(root, name) if root else ''
        if not root or not os.path.isfile(path):
            continue
        image = _read_png_without_icc(path)
        if image is not None and min(image.shape[:2]) >= 64:
            scale = 1024.0 / max(image.shape[:2])
            if scale < 1.0:        # retina.jpg is 1411 px: no patch needs that much
                image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            levels = [image.astype(np.float32) / 255.0]
            while min(levels[-1].shape[:2]) >= 32:
                levels.append(cv2.pyrDown(levels[-1]))
            images.append(tuple(levels))
    return tuple(images)


def available_photos() -> int:
    """Count the scikit-image photographs found (0 when scikit-image is not installed)."""
    return len(_photos(PICTURE_PHOTOS)) + len(_photos(MATERIAL_PHOTOS))


def build_pyramid(image: np.ndarray, min_size: int = 4) -> list:
    """Mip levels of ``image`` (finest first), each Gaussian-filtered and halved."""
    levels = [np.ascontiguousarray(image)]
    while min(levels[-1].shape[:2]) > min_size:
        levels.append(cv2.pyrDown(levels[-1]))
    return levels


def make_texture(rng: np.random.Generator, style: str, height: int, width: int, texel: float,
                 decal_density: float = 1.0) -> np.ndarray:
    """Texture of ``style`` (uint8 BGR, height x width) for texels of ``texel`` metres."""
    generator = _GENERATORS.get(style)
    if generator is None:
        raise ValueError(f'unknown texture style {style!r}')
    image = np.asarray(generator(rng, height, width, texel), np.float32)
    rate = _DECAL_RATE.get(style, 0.0) * decal_density
    if rate > 0:
        _decorate(rng, image, texel, rate, style)
    # Dirt, uneven paint and fine grain: real surfaces are never flat colours.
    low = noise(rng, height, width, 0.7 / texel, 3)
    image *= (1.0 + 0.05 * low)[..., None]
    image += 0.012 * rng.standard_normal((height, width, 1), dtype=np.float32)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# --- building blocks -------------------------------------------------------------------------

def noise(rng: np.random.Generator, height: int, width: int, period: float, octaves: int = 4,
          persistence: float = 0.5, aspect: float = 1.0) -> np.ndarray:
    """
    Make zero-mean, unit-variance fractal value noise; ``period`` is in texels.

    ``aspect`` > 1 stretches the noise along x (wood grain, brushed metal).
    """
    out = np.zeros((height, width), np.float32)
    amplitude, p, used = 1.0, float(period), 0
    for _ in range(octaves):
        if p < 1.5:
            break
        px = p * aspect
        gw, gh = int(width / px) + 3, int(height / p) + 3
        grid = rng.standard_normal((gh, gw), dtype=np.float32)
        ow, oh = int(math.ceil(gw * px)), int(math.ceil(gh * p))
        big = cv2.resize(grid, (ow, oh), interpolation=cv2.INTER_CUBIC)
        ox = int(rng.integers(0, max(1, ow - width - int(px))))
        oy = int(rng.integers(0, max(1, oh - height - int(p))))
        out += amplitude * big[oy:oy + height, ox:ox + width]
        amplitude *= persistence
        p /= 2.0
        used += 1
    if used == 0:
        return rng.standard_normal((height, width), dtype=np.float32)
    std = float(out[::7, ::7].std())
    return out / max(std, 1e-6)


def random_color(rng: np.random.Generator, kind: str = 'any') -> np.ndarray:
    """Draw a plausible surface colour (BGR float32)."""
    u = rng.uniform
    if kind == 'any':
        kind = ('neutral', 'muted', 'muted', 'vivid', 'dark')[int(rng.integers(5))]
    hue = u(0.0, 1.0)
    if kind == 'neutral':
        sat, val = u(0.0, 0.15), u(0.45, 0.95)
    elif kind == 'muted':
        sat, val = u(0.1, 0.45), u(0.3, 0.9)
    elif kind == 'vivid':
        sat, val = u(0.5, 0.95), u(0.35, 1.0)
    elif kind == 'dark':
        sat, val = u(0.0, 0.5), u(0.08, 0.35)
    elif kind == 'light':
        sat, val = u(0.0, 0.2), u(0.8, 1.0)
    elif kind == 'wood':
        hue, sat, val = u(0.05, 0.11), u(0.35, 0.75), u(0.25, 0.8)
    elif kind == 'brick':
        hue, sat, val = u(-0.02, 0.07) % 1.0, u(0.35, 0.7), u(0.3, 0.65)
    else:
        raise ValueError(kind)
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return np.array([b, g, r], np.float32)


def _fill(height: int, width: int, color) -> np.ndarray:
    return np.broadcast_to(np.asarray(color, np.float32), (height, width, 3)).copy()


def _shade(image: np.ndarray, factor: np.ndarray) -> np.ndarray:
    image *= factor[..., None]
    return image


def _recolor(rng: np.random.Generator, image: np.ndarray, strength: float = 0.15) -> np.ndarray:
    """Random near-identity colour transform plus brightness / contrast change."""
    matrix = np.eye(3, dtype=np.float32) + rng.normal(0, strength, (3, 3)).astype(np.float32)
    matrix /= matrix.sum(axis=1, keepdims=True)
    out = image.reshape(-1, 3) @ matrix.T
    out = (out - 0.5) * rng.uniform(0.75, 1.2) + 0.5 + rng.uniform(-0.1, 0.1)
    return np.clip(out, 0.0, 1.0).reshape(image.shape).astype(np.float32)


def photo_patch(rng: np.random.Generator, height: int, width: int,
                names: tuple = PICTURE_PHOTOS, natural: bool = False) -> np.ndarray:
    """
    Cut a random, distorted and recoloured view of a bundled photograph (height x width).

    SIFT descriptors are invariant to similarity transforms and affine intensity changes, so
    a photo reused across a scene must also be sheared, stretched, mirrored, warped and have its
    channels remixed; otherwise two crops of one photo would match across places.
    ``natural`` keeps the colours and skips overlays (material photos such as grass).
    """
    photos = _photos(names)
    if not photos or height < 2 or width < 2:
        return _blob_patch(rng, max(height, 1), max(width, 1))
    levels = photos[int(rng.integers(len(photos)))]
    ph, pw = levels[0].shape[:2]
    # Random affine map from the output patch to the photo: crop size, stretch, shear, turn.
    scale = min(ph, pw) * rng.uniform(0.3, 1.0) / max(height, width)
    stretch = math.exp(rng.uniform(-0.35, 0.35))
    shear = rng.uniform(-0.3, 0.3)
    angle = rng.uniform(-math.pi, math.pi) if rng.random() < 0.3 else rng.normal(0.0, 0.1)
    c, s = math.cos(angle), math.sin(angle)
    turn = np.array([[c, -s], [s, c]])
    linear = scale * turn @ np.array([[stretch, shear], [0.0, 1.0 / stretch]])
    if rng.random() < 0.5:
        linear[:, 0] *= -1.0                      # mirror
    centre_out = np.array([width / 2.0, height / 2.0])
    reach = np.abs(linear) @ centre_out           # half extent of the patch in the photo
    centre_in = np.array([rng.uniform(min(reach[0], pw / 2), max(pw - reach[0], pw / 2)),
                          rng.uniform(min(reach[1], ph / 2), max(ph - reach[1], ph / 2))])
    matrix = np.hstack([linear, (centre_in - linear @ centre_out)[:, None]])
    # Shrinking: read from the photo's mip level that keeps the warp within a 2x reduction.
    level = int(np.clip(math.floor(math.log2(max(scale, 1.0))), 0, len(levels) - 1))
    matrix /= 2.0 ** level
    matrix[:, 2] += 0.5 / 2.0 ** level - 0.5
    patch = cv2.warpAffine(levels[level], matrix.astype(np.float32), (width, height),
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.35 and min(height, width) >= 16:
        patch = _elastic(rng, patch)
    if natural:
        return _recolor(rng, np.ascontiguousarray(patch, dtype=np.float32), 0.03)
    if rng.random() < 0.5:
        patch = patch[..., rng.permutation(3)]
    if rng.random() < 0.15:
        channel = int(rng.integers(3))
        patch[..., channel] = 1.0 - patch[..., channel]
    if rng.random() < 0.25:
        other = _pattern_patch(rng, height, width) if rng.random() < 0.5 else _blob_patch(
            rng, height, width)
        patch = patch * 0.7 + other * 0.3
    return _recolor(rng, np.ascontiguousarray(patch, dtype=np.float32), 0.12)


def _elastic(rng, patch: np.ndarray) -> np.ndarray:
    """Smooth random displacement of a few percent of the patch size."""
    height, width = patch.shape[:2]
    period = max(height, width) / rng.uniform(2.0, 5.0)
    amount = rng.uniform(0.01, 0.04) * max(height, width)
    dx = noise(rng, height, width, period, 1) * amount
    dy = noise(rng, height, width, period, 1) * amount
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(patch, xs + dx, ys + dy, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


def _feather(height: int, width: int, border: float) -> np.ndarray:
    """Alpha mask rising from 0 at the edges to 1 over ``border`` texels."""
    y = np.minimum(np.arange(height), np.arange(height)[::-1])[:, None] + 0.5
    x = np.minimum(np.arange(width), np.arange(width)[::-1])[None, :] + 0.5
    return np.clip(np.minimum(x, y) / max(border, 1.0), 0.0, 1.0).astype(np.float32)


def _paste(image: np.ndarray, patch: np.ndarray, y: int, x: int,
           alpha: Optional[np.ndarray] = None) -> None:
    """Paste ``patch`` with its top-left corner at (y, x), clipped to the image."""
    h, w = patch.shape[:2]
    y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + h, image.shape[0]), min(x + w, image.shape[1])
    if y1 <= y0 or x1 <= x0:
        return
    src = patch[y0 - y:y1 - y, x0 - x:x1 - x]
    if alpha is None:
        image[y0:y1, x0:x1] = src
    else:
        a = alpha[y0 - y:y1 - y, x0 - x:x1 - x, None]
        image[y0:y1, x0:x1] = image[y0:y1, x0:x1] * (1.0 - a) + src * a


def _photo_material(rng, height: int, width: int, texel: float, names: tuple,
                    tile_m: float, tint=None) -> np.ndarray:
    """Overlapping, feathered crops of material photographs at a physical tile size."""
    tile = max(16, int(tile_m / texel))
    image = _fill(height, width, (0.5, 0.5, 0.5))
    step = max(8, int(tile * 0.7))
    for y in range(-step // 2, height, step):
        for x in range(-step // 2, width, step):
            jy, jx = (int(v) for v in rng.integers(-step // 4, step // 4 + 1, 2))
            patch = photo_patch(rng, tile, tile, names, natural=True)
            _paste(image, patch, y + jy, x + jx, _feather(tile, tile, tile * 0.2))
    if tint is not None:
        gray = image.mean(axis=2, keepdims=True)
        image = gray * (np.asarray(tint, np.float32) * 2.0)
    return image


def _text(rng, image: np.ndarray, y0: int, x0: int, y1: int, x1: int, line_px: float,
          color, words: bool = False) -> None:
    """Lines of random glyphs (or sign words) clipped to the box (y0, x0)-(y1, x1), in place."""
    letters = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
    y0, x0 = max(0, int(y0)), max(0, int(x0))
    y1, x1 = min(image.shape[0], int(y1)), min(image.shape[1], int(x1))
    if line_px < 5 or y1 - y0 < line_px or x1 - x0 < line_px:
        return
    # putText only draws on 8-bit images.
    box = (np.clip(image[y0:y1, x0:x1], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    font = _FONTS[int(rng.integers(len(_FONTS)))]
    scale = line_px / 32.0
    thickness = max(1, int(round(line_px / 14.0 * rng.uniform(0.7, 1.6))))
    color = tuple(float(c) * 255.0 for c in color)
    y = line_px
    while y <= y1 - y0:
        if words:
            string = ' '.join(_WORDS[int(i)] for i in rng.integers(len(_WORDS), size=3))
        else:
            chars = rng.integers(len(letters), size=int(rng.integers(8, 60)))
            string = ''.join(' ' if rng.random() < 0.17 else letters[int(i)] for i in chars)
        cv2.putText(box, string, (int(rng.uniform(0, 0.1) * (x1 - x0)), int(y)), font, scale,
                    color, thickness, cv2.LINE_AA)
        y += line_px * rng.uniform(1.3, 2.2)
        if rng.random() < 0.1:
            y += line_px * 2
    image[y0:y1, x0:x1] = box.astype(np.float32) / 255.0


def _text_patch(rng, height: int, width: int, texel: float) -> np.ndarray:
    paper = random_color(rng, 'light') if rng.random() < 0.75 else random_color(rng, 'muted')
    patch = _fill(height, width, paper)
    ink = random_color(rng, 'dark')
    line = max(6.0, min(height / 4.0, rng.uniform(0.008, 0.04) / texel))
    margin = int(0.06 * min(height, width))
    _text(rng, patch, margin, margin, height - margin, width - margin, line, ink,
          words=rng.random() < 0.3)
    return patch


def _blob_patch(rng, height: int, width: int) -> np.ndarray:
    """Abstract art: filled ellipses, bars and lines in a few colours."""
    patch = _fill(height, width, random_color(rng))
    palette = [random_color(rng) for _ in range(int(rng.integers(2, 6)))]
    for _ in range(int(rng.integers(4, 16))):
        color = tuple(float(c) for c in palette[int(rng.integers(len(palette)))])
        cx, cy = int(rng.integers(width)), int(rng.integers(height))
        r = max(2, int(rng.uniform(0.05, 0.4) * min(height, width)))
        shape = rng.random()
        if shape < 0.45:
            cv2.ellipse(patch, (cx, cy), (r, max(1, int(r * rng.uniform(0.3, 1.0)))),
                        rng.uniform(0, 180), 0, 360, color, -1, cv2.LINE_AA)
        elif shape < 0.8:
            cv2.rectangle(patch, (cx, cy), (cx + r, cy + int(r * rng.uniform(0.2, 1.5))),
                          color, -1)
        else:
            cv2.line(patch, (cx, cy), (int(rng.integers(width)), int(rng.integers(height))),
                     color, max(1, r // 8), cv2.LINE_AA)
    return patch


def _pattern_patch(rng, height: int, width: int) -> np.ndarray:
    """Charts, calendars, barcodes, stripes: man-made high-contrast structure."""
    kind = int(rng.integers(4))
    patch = _fill(height, width, random_color(rng, 'light'))
    ink = tuple(float(c) for c in random_color(rng, 'dark'))
    if kind == 0:          # calendar / table: a grid made distinct by the numbers in its cells
        rows, cols = int(rng.integers(3, 8)), int(rng.integers(3, 8))
        cell_h, cell_w = height / rows, width / cols
        numbers = rng.permutation(100)
        for r in range(rows):
            for c in range(cols):
                y0, y1, x0, x1 = int(r * cell_h), int((r + 1) * cell_h), int(c * cell_w), int(
                    (c + 1) * cell_w)
                if rng.random() < 0.3:
                    patch[y0:y1, x0:x1] = random_color(rng, 'vivid')
                cv2.rectangle(patch, (x0, y0), (x1 - 1, y1 - 1), ink, 1)
                _text_line(patch, str(numbers[(r * cols + c) % 100]), x0 + 2, y0, x1, y1, ink)
    elif kind == 1:        # bar chart
        n = int(rng.integers(3, 12))
        for i in range(n):
            h = int(rng.uniform(0.1, 0.9) * height)
            x0, x1 = i * width // n + 1, (i + 1) * width // n - 1
            patch[height - h:, x0:max(x0 + 1, x1 - width // (4 * n))] = random_color(rng, 'vivid')
    elif kind == 2:        # barcode
        x = 0
        while x < width:
            w = int(rng.integers(1, max(2, width // 25)))
            if rng.random() < 0.5:
                patch[:, x:x + w] = ink
            x += w
    else:                  # stripes of random widths and colours
        x = 0
        colors = [random_color(rng, 'vivid') for _ in range(3)]
        while x < width:
            w = int(rng.uniform(0.02, 0.2) * width) + 1
            if rng.random() < 0.6:
                patch[:, x:x + w] = colors[int(rng.integers(3))]
            x += w
    return patch


def _text_line(image: np.ndarray, string: str, x0: int, y0: int, x1: int, y1: int,
               color) -> None:
    """One line of text fitted to the box (y0, x0)-(y1, x1), drawn in place."""
    h, w = y1 - y0, x1 - x0
    if h < 6 or w < 6:
        return
    box = (np.clip(image[y0:y1, x0:x1], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    (tw, th), _ = cv2.getTextSize(string, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 2)
    scale = min(0.6 * h / th, 0.9 * w / tw)
    cv2.putText(box, string, (0, int(h * 0.5 + th * scale / 2)), cv2.FONT_HERSHEY_SIMPLEX,
                scale, tuple(float(c) * 255.0 for c in color), max(1, int(scale * 2)),
                cv2.LINE_AA)
    image[y0:y1, x0:x1] = box.astype(np.float32) / 255.0


def _decal_content(rng, height: int, width: int, texel: float) -> np.ndarray:
    r = rng.random()
    if r < 0.5:
        return photo_patch(rng, height, width)
    if r < 0.7:
        return _text_patch(rng, height, width, texel)
    if r < 0.85:
        return _blob_patch(rng, height, width)
    return _pattern_patch(rng, height, width)


# Expected decals per square metre of each style.
_DECAL_RATE = {
    'paint': 0.9, 'wallpaper': 0.3, 'brick': 0.3, 'tile': 0.3, 'wood_panel': 0.4,
    'concrete': 0.5, 'collage': 0.0, 'wood_floor': 0.1, 'floor_tile': 0.1, 'carpet': 0.1,
    'ceiling': 0.05, 'wood': 0.6, 'painted': 1.0, 'books': 0.0, 'fabric': 0.3, 'metal': 0.8,
    'cardboard': 3.0, 'poster': 0.0, 'text': 0.0, 'glass': 0.0, 'facade_brick': 0.04,
    'facade_concrete': 0.05, 'facade_paint': 0.05, 'facade_glass': 0.0, 'asphalt': 0.02,
    'paving': 0.02, 'grass': 0.0, 'gravel': 0.0,
}


def _decorate(rng, image: np.ndarray, texel: float, rate: float, style: str) -> None:
    """Posters, pictures, notices and stickers at physical sizes, in place."""
    height, width = image.shape[:2]
    area = height * width * texel * texel
    count = int(rng.poisson(rate * area))
    floor = style in STYLES['floor'] or style in STYLES['ground']
    for _ in range(min(count, 60)):
        if floor:                   # rugs, mats, manholes, paint marks
            size_m = rng.uniform(0.4, 2.0)
        elif rng.random() < 0.3:    # stickers, labels, notes
            size_m = rng.uniform(0.05, 0.2)
        else:                       # posters, pictures, notices, signs
            size_m = rng.uniform(0.25, 1.3)
        aspect = math.exp(rng.uniform(-0.6, 0.6))
        h = int(size_m / math.sqrt(aspect) / texel)
        w = int(size_m * math.sqrt(aspect) / texel)
        h, w = min(h, height - 2), min(w, width - 2)
        if h < 8 or w < 8:
            continue
        patch = _decal_content(rng, h, w, texel)
        if rng.random() < 0.5:     # frame or border
            b = max(1, int(rng.uniform(0.005, 0.04) / texel))
            tone = ('dark', 'light')[int(rng.random() < 0.5)]
            frame = tuple(float(c) for c in random_color(rng, tone))
            cv2.rectangle(patch, (0, 0), (w - 1, h - 1), frame, min(b, min(h, w) // 4))
        y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        _paste(image, patch, y, x)


# --- materials --------------------------------------------------------------------------------

def _paint(rng, height, width, texel):
    base = random_color(rng, ('neutral', 'muted', 'light')[int(rng.integers(3))])
    image = _fill(height, width, base)
    # Weak, smooth variation only: flat paint should give few (and only stable) keypoints.
    shade = (1.0 + 0.025 * noise(rng, height, width, 0.8 / texel, 3)
             + 0.01 * noise(rng, height, width, 3.0, 2))
    if rng.random() < 0.4:          # roller streaks
        shade += 0.02 * noise(rng, height, width, 0.15 / texel, 2, aspect=0.1)
    return _shade(image, shade)


def _concrete(rng, height, width, texel):
    grey = rng.uniform(0.4, 0.75)
    base = np.array([grey, grey, grey], np.float32) * (1 + rng.normal(0, 0.03, 3)).astype(
        np.float32)
    image = _fill(height, width, base)
    shade = (1.0 + 0.1 * noise(rng, height, width, 0.4 / texel, 4, 0.6)
             + 0.025 * noise(rng, height, width, 2.0, 2))
    stains = noise(rng, height, width, 0.3 / texel, 3)
    shade -= 0.12 * np.clip(stains - 1.0, 0.0, 1.0)          # distinct dark patches
    _shade(image, shade)
    dark = tuple(float(c) for c in base * 0.55)
    # Pits and tie holes only where they span a few texels (sub-texel dots would alias).
    if 0.004 / texel >= 1.5:
        for _ in range(int(rng.poisson(height * width * texel * texel * 40))):
            cv2.circle(image, (int(rng.integers(width)), int(rng.integers(height))),
                       int(rng.uniform(0.002, 0.006) / texel),
                       tuple(float(c) * rng.uniform(0.7, 1.3) for c in dark), -1, cv2.LINE_AA)
    if rng.random() < 0.6:          # formwork joints and tie holes
        step = rng.uniform(0.9, 2.4) / texel
        hole = int(0.012 / texel)
        for k in range(1, int(width / step) + 1):
            x = int(k * step)
            cv2.line(image, (x, 0), (x, height), dark, max(1, int(0.004 / texel)))
            for y in np.arange(0.3, height * texel, 0.6) if hole >= 2 else ():
                cv2.circle(image, (x - int(step / 2), int(y / texel)), hole, dark, -1,
                           cv2.LINE_AA)
    return image


def _brick(rng, height, width, texel, scale: Optional[float] = None):
    scale = scale or rng.uniform(0.9, 1.4)
    bw, bh = 0.215 * scale / texel, 0.065 * scale / texel
    mortar = max(1.0, 0.01 * scale / texel)
    sw, sh = bw + mortar, bh + mortar
    ys = np.arange(height, dtype=np.float32)[:, None]
    row = (ys // sh).astype(np.int64)
    n_rows = int(row.max()) + 2
    shifts = (row % 2) * (sw / 2) + rng.uniform(-0.15, 0.15, n_rows)[row] * sw
    xs = np.arange(width, dtype=np.float32)[None, :] + shifts
    col = (xs // sw).astype(np.int64)
    base = random_color(rng, 'brick' if rng.random() < 0.7 else 'muted')
    table = base * (1.0 + rng.normal(0, 0.16, (n_rows, int(col.max()) + 2, 1)))
    table += rng.normal(0, 0.02, table.shape)
    special = rng.random((n_rows, table.shape[1], 1)) < 0.06     # burnt or replaced bricks
    table = np.where(special, table * rng.uniform(0.5, 1.4), table)
    image = table.astype(np.float32)[row, col]
    # Texture inside each brick: that, not the mortar grid, tells one brick from another.
    _shade(image, 1.0 + 0.08 * noise(rng, height, width, 3.0, 2)
           + 0.16 * noise(rng, height, width, max(bh * 0.7, 2.0), 2)
           + 0.08 * noise(rng, height, width, 0.5 / texel, 3)
           + 0.06 * noise(rng, height, width, 0.6 / texel, 2, aspect=0.15))   # soot streaks
    for _ in range(int(rng.poisson(height * width / (sw * sh) * 0.4))):       # chips
        cv2.ellipse(image, (int(rng.integers(width)), int(rng.integers(height))),
                    (max(1, int(bh * rng.uniform(0.1, 0.3))),
                     max(1, int(bh * rng.uniform(0.05, 0.2)))),
                    rng.uniform(0, 180), 0, 360, tuple(float(c) for c in base * 0.55), -1,
                    cv2.LINE_AA)
    in_mortar = ((ys % sh) >= bh) | ((xs % sw) >= bw)
    mortar_color = random_color(rng, 'neutral') * rng.uniform(0.6, 1.0)
    image[in_mortar] = mortar_color * (1.0 + 0.06 * rng.standard_normal(
        (int(in_mortar.sum()), 1), dtype=np.float32))
    return image


def _tile(rng, height, width, texel, size_m: Optional[float] = None):
    size = (size_m or rng.uniform(0.1, 0.6)) / texel
    sx, sy = size, size * (1.0 if rng.random() < 0.6 else rng.choice([0.5, 2.0]))
    grout = max(1.0, rng.uniform(0.002, 0.008) / texel)
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    row = (ys // sy).astype(np.int64)
    staggered = rng.random() < 0.3
    shift = (row % 2) * (sx / 2) * staggered
    col = ((xs + shift) // sx).astype(np.int64)
    tones = ('neutral', 'muted', 'muted', 'light', 'dark', 'any')
    palette = np.array([random_color(rng, tones[int(rng.integers(len(tones)))])
                        for _ in range(int(rng.integers(1, 4)))])
    n_r, n_c = int(row.max()) + 2, int(col.max()) + 2
    pattern = rng.random()
    if pattern < 0.35:
        choice = rng.integers(len(palette), size=(n_r, n_c))
    elif pattern < 0.6:
        choice = np.add.outer(np.arange(n_r), np.arange(n_c)) % len(palette)
    else:
        choice = np.zeros((n_r, n_c), np.int64)
    table = palette[choice] * (1.0 + rng.normal(0, 0.1, (n_r, n_c, 1)))
    image = table.astype(np.float32)[row, col]
    _shade(image, 1.0 + rng.uniform(0.02, 0.05) * noise(rng, height, width, max(2.0, sx / 4), 3)
           + 0.03 * rng.standard_normal((height, width), dtype=np.float32))
    # A few decorated or stained tiles break the grid's repetition.
    w, h = int(sx) - int(grout), int(sy) - int(grout)
    for _ in range(int(rng.poisson(n_r * n_c * 0.12)) if min(w, h) >= 6 else 0):
        r, c = int(rng.integers(n_r)), int(rng.integers(n_c))
        x0 = int(c * sx - (r % 2) * sx / 2 * staggered) + int(grout)
        patch = (_blob_patch(rng, h, w) if rng.random() < 0.5
                 else _fill(h, w, random_color(rng, 'dark')))
        _paste(image, patch, int(r * sy) + int(grout), x0,
               np.full((h, w), rng.uniform(0.25, 0.9), np.float32))
    in_grout = ((ys % sy) < grout) | (((xs + shift) % sx) < grout)
    grout_color = random_color(rng, 'neutral') * 0.7
    image[np.broadcast_to(in_grout, (height, width))] = grout_color
    return image


def _wood(rng, height, width, texel, planks: bool = True):
    base = random_color(rng, 'wood')
    if planks:
        pw, pl = rng.uniform(0.08, 0.25) / texel, rng.uniform(0.8, 2.0) / texel
    else:
        pw, pl = rng.uniform(0.15, 0.4) / texel, 1e9
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    row = (ys // pw).astype(np.int64)
    n_rows = int(row.max()) + 2
    offsets = rng.uniform(0, pl, n_rows).astype(np.float32) if planks else np.zeros(n_rows)
    col = ((xs + offsets[row]) // pl).astype(np.int64)
    table = base * (1.0 + rng.normal(0, 0.12, (n_rows, int(col.max()) + 2, 1)))
    image = table.astype(np.float32)[row, col]
    ring = max(3.0, rng.uniform(0.004, 0.012) / texel)
    warp = noise(rng, height, width, pw * 1.5, 3, aspect=8.0)
    grain = np.sin((ys / ring + 1.8 * warp + rng.uniform(0, 6)) * 2 * np.pi)
    streaks = noise(rng, height, width, 2.0, 2, aspect=15.0)
    _shade(image, 1.0 + 0.07 * grain + 0.05 * streaks)
    seam = tuple(float(c) for c in base * 0.35)
    if planks:
        for r in range(n_rows):
            y = int(r * pw)
            cv2.line(image, (0, y), (width, y), seam, 1)
            for x in np.arange(-offsets[r], width, pl):
                cv2.line(image, (int(x), y), (int(x), int(y + pw)), seam, 1)
    # Knots: each one different (identical blobs would all match each other).
    for _ in range(int(rng.poisson(height * width * texel * texel * 3.0))):
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        length = rng.uniform(0.006, 0.03) / texel
        axes = (max(1, int(length)), max(1, int(length * rng.uniform(0.25, 0.6))))
        angle = rng.normal(0.0, 15.0)
        shade = tuple(float(c) for c in base * rng.uniform(0.25, 0.6))
        cv2.ellipse(image, centre, (int(axes[0] * 1.6) + 1, int(axes[1] * 1.6) + 1), angle, 0,
                    360, tuple(float(c) for c in base * rng.uniform(0.6, 0.85)), -1,
                    cv2.LINE_AA)
        cv2.ellipse(image, centre, axes, angle, 0, 360, shade, -1, cv2.LINE_AA)
    return image


def _carpet(rng, height, width, texel):
    colors = [random_color(rng, 'muted'), random_color(rng, 'any'), random_color(rng, 'muted')]
    period = rng.uniform(0.05, 0.4) / texel
    image = _fill(height, width, colors[0])
    for color in colors[1:]:
        blob = noise(rng, height, width, period, 4) > rng.uniform(0.0, 1.0)
        image[blob] = color
    return _shade(image, 1.0 + 0.04 * rng.standard_normal((height, width), dtype=np.float32)
                  + 0.06 * noise(rng, height, width, 0.3 / texel, 3))


def _fabric(rng, height, width, texel):
    tone = ('muted', 'vivid', 'dark')[int(rng.integers(3))]
    image = _fill(height, width, random_color(rng, tone))
    if rng.random() < 0.6:           # printed fabric
        pattern = (_blob_patch if rng.random() < 0.5 else _pattern_patch)(rng, height, width)
        image = 0.5 * image + 0.5 * pattern
    period = max(2.5, 0.004 / texel)
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    weave = np.sin(xs * 2 * np.pi / period) * np.sin(ys * 2 * np.pi / period)
    folds = noise(rng, height, width, 0.25 / texel, 3)
    return _shade(image, 1.0 + 0.015 * weave + 0.08 * folds)


def _metal(rng, height, width, texel):
    image = _fill(height, width, random_color(rng, ('neutral', 'muted', 'vivid')[
        int(rng.integers(3))]))
    _shade(image, 1.0 + 0.06 * noise(rng, height, width, 4.0, 2, aspect=25.0)
           + 0.08 * noise(rng, height, width, 0.5 / texel, 3))
    dark = tuple(float(c) for c in image[0, 0] * 0.5)
    light = tuple(float(min(1.0, c * 1.15)) for c in image[0, 0])
    for _ in range(int(rng.poisson(height * width * texel * texel * 6))):      # scratches
        x, y = int(rng.integers(width)), int(rng.integers(height))
        length = rng.uniform(0.02, 0.2) / texel
        angle = rng.uniform(0, np.pi)
        cv2.line(image, (x, y), (int(x + length * np.cos(angle)), int(y + length * np.sin(angle))),
                 light, 1, cv2.LINE_AA)
    step = rng.uniform(0.3, 1.2) / texel
    for y in np.arange(step, height, step):   # panel seams
        cv2.line(image, (0, int(y)), (width, int(y)), dark, max(1, int(0.003 / texel)))
    return image


def _cardboard(rng, height, width, texel):
    base = random_color(rng, 'wood') * rng.uniform(1.0, 1.3)
    image = _fill(height, width, np.clip(base, 0, 1))
    _shade(image, 1.0 + 0.06 * noise(rng, height, width, 0.1 / texel, 4)
           + 0.03 * noise(rng, height, width, 3.0, 1, aspect=10.0))
    if rng.random() < 0.6:           # tape
        t = int(0.05 / texel)
        y = int(rng.integers(0, max(1, height - t)))
        image[y:y + t] = image[y:y + t] * 0.6 + 0.4 * random_color(rng, 'light')
    return image


def _books(rng, height, width, texel):
    image = _fill(height, width, random_color(rng, 'wood') * 0.6)
    shelf = rng.uniform(0.28, 0.42) / texel
    board = max(2, int(0.02 / texel))
    y = 0.0
    while y < height:
        top = int(y)
        cv2.rectangle(image, (0, top), (width, top + board), tuple(
            float(c) for c in random_color(rng, 'wood')), -1)
        x = float(rng.uniform(0, 0.05) / texel)
        while x < width:
            bw = rng.uniform(0.015, 0.06) / texel
            bh = rng.uniform(0.6, 0.95) * (shelf - board)
            if rng.random() < 0.08:
                x += bw * 2
                continue
            x0, x1 = int(x), int(x + bw)
            y1 = int(y + shelf)
            y0 = int(y1 - bh)
            color = random_color(rng, ('vivid', 'muted', 'dark', 'light')[int(rng.integers(4))])
            image[max(0, y0):y1, x0:x1] = color
            if x1 - x0 >= 6 and y1 - y0 >= 20 and rng.random() < 0.7:
                ink = random_color(rng, 'light' if color.mean() < 0.5 else 'dark')
                band = max(1, (x1 - x0) // 5)
                image[max(0, y0 + (y1 - y0) // 6):max(0, y0 + (y1 - y0) // 6) + band,
                      x0:x1] = ink
                spine = np.ascontiguousarray(np.full((x1 - x0, y1 - y0, 3), color, np.float32))
                _text(rng, spine, 0, 2, spine.shape[0], spine.shape[1] - 2,
                      max(5.0, (x1 - x0) * 0.6), ink)
                _paste(image, np.ascontiguousarray(np.rot90(spine, 1)), y0, x0)
            x += bw + 1
        y += shelf
    return image


def _collage(rng, height, width, texel):
    image = _paint(rng, height, width, texel)
    area = height * width * texel * texel
    for _ in range(int(np.clip(area * rng.uniform(1.5, 4.0), 2, 80))):
        size_m = rng.uniform(0.15, 1.0)
        aspect = math.exp(rng.uniform(-0.5, 0.5))
        h = min(height, max(8, int(size_m / math.sqrt(aspect) / texel)))
        w = min(width, max(8, int(size_m * math.sqrt(aspect) / texel)))
        patch = _decal_content(rng, h, w, texel) if rng.random() < 0.4 else photo_patch(
            rng, h, w)
        _paste(image, patch, int(rng.integers(-h // 4, height - 3 * h // 4 + 1)),
               int(rng.integers(-w // 4, width - 3 * w // 4 + 1)))
    return image


def _wallpaper(rng, height, width, texel):
    """Print wallpaper: a motif on a staggered lattice with per-motif variation."""
    image = _paint(rng, height, width, texel)
    cell = rng.uniform(0.12, 0.35) / texel
    motif = int(cell * rng.uniform(0.4, 0.8))
    if motif < 4:
        return image
    palette = [random_color(rng) for _ in range(3)]
    for r, y in enumerate(np.arange(0, height + cell, cell)):
        for x in np.arange(-(r % 2) * cell / 2, width + cell, cell):
            # Hand-printed look: every motif differs in shape, size, turn and shade.
            color = tuple(float(c) for c in palette[int(rng.integers(3))]
                          * rng.uniform(0.8, 1.2))
            centre = (int(x + rng.normal(0, cell * 0.08)), int(y + rng.normal(0, cell * 0.08)))
            size = max(2, int(motif * rng.uniform(0.7, 1.3)))
            shape = int(rng.integers(4))
            if shape == 0:
                cv2.ellipse(image, centre, (size // 2, size // 4), rng.uniform(0, 180), 0, 360,
                            color, -1, cv2.LINE_AA)
            elif shape == 1:
                cv2.circle(image, centre, size // 3, color, max(1, size // 10), cv2.LINE_AA)
            elif shape == 2:
                angle = rng.uniform(0, 2 * np.pi)
                pts = [(centre[0] + size / 2 * np.cos(angle + k * 2.4),
                        centre[1] + size / 2 * np.sin(angle + k * 2.4)) for k in range(5)]
                cv2.polylines(image, [np.array(pts, np.int32)], True, color,
                              max(1, size // 12), cv2.LINE_AA)
            else:
                cv2.ellipse(image, centre, (size // 2, size // 2), rng.uniform(0, 360), 0,
                            rng.uniform(90, 300), color, max(1, size // 8), cv2.LINE_AA)
    return image


def _wood_panel(rng, height, width, texel):
    image = _wood(rng, width, height, texel, planks=True)
    return np.ascontiguousarray(np.rot90(image, 1))


def _ceiling(rng, height, width, texel):
    if rng.random() < 0.5:
        image = _tile(rng, height, width, texel, size_m=0.6)
        image = image * 0.3 + 0.7 * random_color(rng, 'light')
    else:
        image = _paint(rng, height, width, texel)
    _shade(image, 1.0 + 0.02 * rng.standard_normal((height, width), dtype=np.float32))
    area = height * width * texel * texel
    stains = noise(rng, height, width, 0.4 / texel, 3) > 1.6
    image[stains] *= rng.uniform(0.75, 0.9)
    dark = tuple(float(c) for c in random_color(rng, 'dark'))
    for _ in range(int(rng.poisson(area * 0.4))):      # sprinklers, detectors, vents
        x, y = int(rng.integers(width)), int(rng.integers(height))
        if rng.random() < 0.6:
            r = max(1, int(rng.uniform(0.03, 0.08) / texel))
            cv2.circle(image, (x, y), r, (0.9, 0.9, 0.9), -1, cv2.LINE_AA)
            cv2.circle(image, (x, y), max(1, r // 2), dark, -1, cv2.LINE_AA)
        else:
            w, h = int(rng.uniform(0.2, 0.6) / texel), int(rng.uniform(0.2, 0.6) / texel)
            cv2.rectangle(image, (x, y), (x + w, y + h), dark, -1)
            for yy in range(y, y + h, max(2, int(0.025 / texel))):
                cv2.line(image, (x, yy), (x + w, yy), (0.8, 0.8, 0.8), 1)
    for _ in range(int(np.clip(area / 3.0, 1, 12))):
        w, h = (int(0.6 / texel), int(0.6 / texel)) if rng.random() < 0.5 else (
            int(1.2 / texel), int(0.3 / texel))
        x, y = int(rng.integers(0, max(1, width - w))), int(rng.integers(0, max(1, height - h)))
        lamp = _fill(h, w, (0.98, 0.98, 0.98))
        louvre = max(2, int(0.05 / texel))
        lamp[::louvre] *= 0.7
        cv2.rectangle(lamp, (0, 0), (w - 1, h - 1), (0.5, 0.5, 0.5), max(1, int(0.02 / texel)))
        _paste(image, lamp, y, x)
    return image


def _poster(rng, height, width, texel):
    image = _fill(height, width, random_color(rng, 'light'))
    border = int(min(height, width) * rng.uniform(0.0, 0.1))
    inner_h, inner_w = height - 2 * border, width - 2 * border
    if inner_h >= 8 and inner_w >= 8:
        _paste(image, photo_patch(rng, inner_h, inner_w), border, border)
    line = max(6.0, rng.uniform(0.02, 0.08) / texel)
    if rng.random() < 0.6 and height > 3 * line:
        _text(rng, image, int(height * 0.7), border + 2, height - border, width - border, line,
              random_color(rng, 'vivid'), words=True)
    return image


def _text_style(rng, height, width, texel):
    return _text_patch(rng, height, width, texel)


def _painted(rng, height, width, texel):
    image = _paint(rng, height, width, texel)
    image = image * rng.uniform(0.5, 1.0) + 0.2 * random_color(rng, 'vivid')
    return _shade(image, 1.0 + 0.02 * noise(rng, height, width, 0.05 / texel, 3))


def _glass(rng, height, width, texel):
    """Dark glass with a blurred, view-independent fake reflection."""
    reflection = photo_patch(rng, height, width)
    reflection = cv2.GaussianBlur(reflection, (0, 0), max(1.0, 0.01 / texel))
    tint = random_color(rng, 'dark') + np.array([0.08, 0.05, 0.0], np.float32)
    return (0.35 * reflection + tint).astype(np.float32)


def _facade(rng, height, width, texel, material: str):
    makers = {'brick': _brick, 'concrete': _concrete, 'paint': _paint, 'glass': _glass}
    image = makers[material](rng, height, width, texel)
    if material == 'glass':        # curtain wall: mullion grid over a reflective skin
        step_x, step_y = rng.uniform(1.2, 2.0) / texel, rng.uniform(1.2, 1.8) / texel
        frame = tuple(float(c) for c in random_color(rng, ('dark', 'neutral')[
            int(rng.integers(2))]))
        t = max(1, int(0.06 / texel))
        spandrel = random_color(rng, ('dark', 'muted')[int(rng.integers(2))])
        # Panels differ (tint, opaque spandrels, blinds) so that the grid is not a lattice of
        # identical corners.
        for y in np.arange(0, height, step_y):
            for x in np.arange(0, width, step_x):
                y0, x0 = int(y), int(x)
                h, w = int(min(step_y, height - y0)), int(min(step_x, width - x0))
                if h < 2 or w < 2:
                    continue
                kind = rng.random()
                if kind < 0.15:
                    image[y0:y0 + h, x0:x0 + w] = spandrel * rng.uniform(0.8, 1.2)
                elif kind < 0.3:
                    bh = int(h * rng.uniform(0.2, 0.9))
                    image[y0:y0 + bh, x0:x0 + w] = random_color(rng, 'light') * rng.uniform(
                        0.5, 0.8)
                else:
                    image[y0:y0 + h, x0:x0 + w] *= rng.uniform(0.7, 1.3)
        for x in np.arange(0, width, step_x):
            cv2.line(image, (int(x), 0), (int(x), height), frame, t)
        for y in np.arange(0, height, step_y):
            cv2.line(image, (0, int(y)), (width, int(y)), frame, t)
        return image
    storey = rng.uniform(2.8, 3.6) / texel
    ground = rng.uniform(3.5, 4.5) / texel
    win_w, win_h = rng.uniform(0.8, 1.6) / texel, rng.uniform(1.2, 1.8) / texel
    spacing = win_w + rng.uniform(0.6, 2.0) / texel
    frame = tuple(float(c) for c in random_color(rng, ('light', 'dark', 'neutral')[
        int(rng.integers(3))]))
    sill = tuple(float(c) for c in random_color(rng, 'light') * 0.9)
    t = max(1, int(0.05 / texel))
    # Shop fronts and doors on the ground floor (texture y grows downwards from the roof line).
    y_top = height - int(ground)
    x = rng.uniform(0.3, 1.5) / texel
    while x < width - 1.0 / texel:
        w = rng.uniform(1.5, 5.0) / texel
        x1 = min(width, x + w)
        if x1 - x > 8 and ground > 16:
            y0 = y_top + int(0.6 / texel)
            y1 = height - int(rng.uniform(0.0, 0.4) / texel)
            kind = rng.random()
            if kind < 0.4:
                window = _glass(rng, max(1, y1 - y0), int(x1 - x), texel)
            elif kind < 0.7:
                window = _poster(rng, max(1, y1 - y0), int(x1 - x), texel)
            else:
                window = _fill(max(1, y1 - y0), int(x1 - x), random_color(rng, 'dark'))
            _paste(image, window, y0, int(x))
            cv2.rectangle(image, (int(x), y0), (int(x1), y1), frame, t)
            line = max(6.0, rng.uniform(0.25, 0.45) / texel)
            if rng.random() < 0.6 and y0 - y_top > line:
                sign = tuple(float(c) for c in random_color(rng, 'vivid'))
                cv2.rectangle(image, (int(x), y_top + 2), (int(x1), y0 - 2), sign, -1)
                _text(rng, image, y_top + 2, int(x) + 2, int(y_top + line * 1.2), int(x1),
                      line, random_color(rng, 'light'), words=True)
        x = x1 + rng.uniform(0.3, 2.0) / texel
    # Upper floors: rows of windows; each floor and each window varies a little.
    y_floor = y_top
    while y_floor - storey >= 0:
        floor_w = win_w * rng.uniform(0.85, 1.15)
        y0 = int(y_floor - storey + (storey - win_h) * rng.uniform(0.35, 0.5))
        shutters = rng.random() < 0.3
        balcony = rng.random() < 0.2
        for x in np.arange(spacing / 2, width - floor_w, spacing):
            if rng.random() < 0.06:
                continue
            x0, w, h = int(x), int(floor_w), int(win_h)
            _paste(image, _glass(rng, h, w, texel), y0, x0)
            extra = rng.random()
            if extra < 0.25:          # curtains
                cw = int(w * rng.uniform(0.2, 0.5))
                image[y0:y0 + h, x0:x0 + cw] = random_color(rng, 'light') * rng.uniform(0.6, 0.9)
            elif extra < 0.4:         # blinds
                bh = int(h * rng.uniform(0.2, 0.8))
                blind = _fill(bh, w, random_color(rng, 'light') * rng.uniform(0.7, 1.0))
                blind[::max(2, int(0.03 / texel))] *= 0.8
                _paste(image, blind, y0, x0)
            elif extra < 0.5:         # plants on the sill
                for _ in range(int(rng.integers(2, 6))):
                    leaf = (int(x0 + rng.uniform(0, w)), int(y0 + h * rng.uniform(0.7, 1.0)))
                    cv2.circle(image, leaf,
                               max(1, int(rng.uniform(0.05, 0.15) / texel)),
                               tuple(float(c) for c in random_color(rng) * [0.4, 0.8, 0.4]), -1,
                               cv2.LINE_AA)
            cv2.rectangle(image, (x0, y0), (x0 + w, y0 + h), frame, t)
            cv2.line(image, (x0 + w // 2, y0), (x0 + w // 2, y0 + h), frame, max(1, t // 2))
            cv2.rectangle(image, (x0 - t, y0 + h), (x0 + w + t, y0 + h + 2 * t), sill, -1)
            if shutters:
                sw = max(2, w // 3)
                color = tuple(float(c) for c in random_color(rng, 'muted'))
                for sx in (x0 - sw - t, x0 + w + t):
                    cv2.rectangle(image, (sx, y0), (sx + sw, y0 + h), color, -1)
                    for yy in range(y0, y0 + h, max(2, int(0.04 / texel))):
                        cv2.line(image, (sx, yy), (sx + sw, yy), frame, 1)
            if rng.random() < 0.08:   # air conditioner below the window
                aw, ah = int(0.8 / texel), int(0.5 / texel)
                unit = _fill(max(ah, 2), max(aw, 2), random_color(rng, 'light') * 0.85)
                unit[::max(2, int(0.03 / texel))] *= 0.7
                _paste(image, unit, y0 + h + 3 * t, x0 + (w - aw) // 2)
        if balcony:                   # railing across the floor
            rail = tuple(float(c) for c in random_color(rng, 'dark'))
            yb = int(y0 + win_h)
            cv2.line(image, (0, yb - int(1.0 / texel)), (width, yb - int(1.0 / texel)), rail,
                     max(1, int(0.05 / texel)))
            for xb in np.arange(0, width, max(2.0, 0.12 / texel)):
                cv2.line(image, (int(xb), yb - int(1.0 / texel)), (int(xb), yb), rail, 1)
        y_floor -= storey
    return image


def _asphalt(rng, height, width, texel):
    grey = rng.uniform(0.18, 0.35)
    image = _fill(height, width, (grey, grey, grey * rng.uniform(0.95, 1.05)))
    _shade(image, 1.0 + 0.12 * noise(rng, height, width, 0.5 / texel, 4, 0.65)
           + 0.05 * rng.standard_normal((height, width), dtype=np.float32))
    white = (0.85, 0.85, 0.85) if rng.random() < 0.7 else (0.2, 0.75, 0.9)
    for _ in range(int(rng.integers(0, 4))):       # road markings
        horizontal = rng.random() < 0.5
        pos = int(rng.integers(0, height if horizontal else width))
        t = max(1, int(rng.uniform(0.1, 0.2) / texel))
        dash, gap = rng.uniform(1.0, 3.0) / texel, rng.uniform(1.0, 3.0) / texel
        for s in np.arange(0, width if horizontal else height, dash + gap):
            p0, p1 = (int(s), pos), (int(s + dash), pos)
            if not horizontal:
                p0, p1 = p0[::-1], p1[::-1]
            cv2.line(image, p0, p1, white, t)
    for _ in range(int(rng.poisson(height * width * texel * texel * 0.05))):    # cracks
        pts = np.cumsum(rng.normal(0, 0.15 / texel, (12, 2)), axis=0) + [
            rng.integers(width), rng.integers(height)]
        cv2.polylines(image, [pts.astype(np.int32)], False, (0.08, 0.08, 0.08), 1, cv2.LINE_AA)
    area = height * width * texel * texel
    for _ in range(int(rng.poisson(area * 0.03))):                # repair patches
        w, h = (int(v / texel) for v in rng.uniform(0.5, 4.0, 2))
        x, y = int(rng.integers(width)), int(rng.integers(height))
        image[y:y + h, x:x + w] *= rng.uniform(0.7, 1.3)
    for _ in range(int(rng.poisson(area * 0.06))):                # oil stains
        cv2.ellipse(image, (int(rng.integers(width)), int(rng.integers(height))),
                    (int(rng.uniform(0.1, 0.6) / texel) + 1,
                     int(rng.uniform(0.1, 0.4) / texel) + 1),
                    rng.uniform(0, 180), 0, 360, (grey * 0.5,) * 3, -1, cv2.LINE_AA)
    for _ in range(int(rng.poisson(area * 0.01))):                # manhole covers
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        r = int(0.35 / texel)
        cv2.circle(image, centre, r, (0.15, 0.15, 0.16), -1, cv2.LINE_AA)
        for k in range(1, 4):
            cv2.circle(image, centre, r * k // 4, (0.3, 0.3, 0.3), max(1, r // 12), cv2.LINE_AA)
    litter = int(rng.poisson(area * 1.5))                          # leaves, litter, stones
    if litter and 0.02 / texel >= 1.0:
        for _ in range(min(litter, 4000)):
            color = tuple(float(c) for c in random_color(rng))
            cv2.circle(image, (int(rng.integers(width)), int(rng.integers(height))),
                       max(1, int(rng.uniform(0.01, 0.04) / texel)), color, -1, cv2.LINE_AA)
    return image


def _paving(rng, height, width, texel):
    image = _tile(rng, height, width, texel, size_m=rng.uniform(0.2, 0.6))
    image = image * 0.6 + 0.4 * random_color(rng, 'neutral')
    return _shade(image, 1.0 + 0.1 * noise(rng, height, width, 0.05 / texel, 3))


def _grass(rng, height, width, texel):
    tint = np.array([0.15, 0.45, 0.3], np.float32) * rng.uniform(0.8, 1.2, 3).astype(np.float32)
    image = _photo_material(rng, height, width, texel, ('grass.png',), rng.uniform(0.8, 1.6),
                            tint)
    return _shade(image, 1.0 + 0.15 * noise(rng, height, width, 1.0 / texel, 3))


def _gravel(rng, height, width, texel):
    tint = random_color(rng, 'neutral') * 0.7 + 0.3 * random_color(rng, 'wood')
    return _photo_material(rng, height, width, texel, ('gravel.png', 'moon.png'),
                           rng.uniform(0.6, 1.2), tint)


_GENERATORS = {
    'paint': _paint,
    'concrete': _concrete,
    'brick': _brick,
    'tile': _tile,
    'floor_tile': _tile,
    'wood': lambda rng, h, w, t: _wood(rng, h, w, t, planks=rng.random() < 0.3),
    'wood_floor': _wood,
    'wood_panel': _wood_panel,
    'carpet': _carpet,
    'fabric': _fabric,
    'metal': _metal,
    'cardboard': _cardboard,
    'books': _books,
    'collage': _collage,
    'wallpaper': _wallpaper,
    'ceiling': _ceiling,
    'poster': _poster,
    'text': _text_style,
    'painted': _painted,
    'glass': _glass,
    'facade_brick': lambda rng, h, w, t: _facade(rng, h, w, t, 'brick'),
    'facade_concrete': lambda rng, h, w, t: _facade(rng, h, w, t, 'concrete'),
    'facade_paint': lambda rng, h, w, t: _facade(rng, h, w, t, 'paint'),
    'facade_glass': lambda rng, h, w, t: _facade(rng, h, w, t, 'glass'),
    'asphalt': _asphalt,
    'paving': _paving,
    'grass': _grass,
    'gravel': _gravel,
}
