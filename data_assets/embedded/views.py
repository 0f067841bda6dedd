"""Render every view of one location from its source: satellite, street map, drone, panorama, ground.

Geometry conventions: a source pixel (x right, y down) is `sx` x `sy` metres; ground offsets are
(east, north) metres from the tile centre; headings are degrees clockwise from north.
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from data_assets.embedded.geometry import Window
from data_assets.embedded.sources import Source

MAP_STYLE = {  # a plain cartographic palette (OpenStreetMap-like)
    "background": (242, 239, 233),
    "building": (217, 208, 201),
    "building_edge": (190, 178, 167),
    "road_casing": (187, 187, 187),
    "road": (255, 255, 255),
}
LANE_WIDTH_M = 3.5  # drawn road width per lane; the casing adds 1 m on each side


def encode(img: Image.Image, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=quality, optimize=True)
    else:
        img.save(buf, "PNG", optimize=True)
    return buf.getvalue()


# ---------------------------------------------------------------- satellite

def satellite(src: Source, win: Window, tile_px: int, coarse_gsd_m: float) -> Image.Image:
    """The reference view. SpaceNet is real satellite imagery: resampled only. NEON is 10 cm airborne
    imagery, so it is degraded to look like a satellite: box-downsampled to `coarse_gsd_m`, blurred,
    with flatter colour and contrast, then upsampled to `tile_px` (the saved pixels are finer than the
    information they carry, as in pan-sharpened products)."""
    crop = src.image.crop(win)
    if src.family == "spacenet":
        return crop.resize((tile_px, tile_px), Image.Resampling.LANCZOS)
    extent_m = max((win[2] - win[0]) * src.sx, (win[3] - win[1]) * src.sy)
    coarse = max(8, round(extent_m / coarse_gsd_m))
    img = crop.resize((coarse, coarse), Image.Resampling.BOX)
    img = img.filter(ImageFilter.GaussianBlur(0.6))
    img = ImageEnhance.Color(img).enhance(0.7)
    img = ImageEnhance.Contrast(img).enhance(0.8)
    r, g, b = img.split()  # a slightly warm, hazy sensor
    img = Image.merge("RGB", (r.point(lambda v: min(255, int(v * 1.05 + 8))), g.point(lambda v: int(v * 0.98 + 6)),
                              b.point(lambda v: int(v * 0.9 + 12))))
    return img.resize((tile_px, tile_px), Image.Resampling.BICUBIC)


# ---------------------------------------------------------------- street map

def street_map(src: Source, win: Window, tile_px: int, supersample: int = 2) -> Image.Image:
    """Cartographic rendering of the source's vectors inside the window: buildings as filled
    polygons, roads as cased lines with a width from their lane count. Drawn at `supersample` x and
    downsampled for anti-aliasing."""
    size = tile_px * supersample
    kx = size / (win[2] - win[0])
    ky = size / (win[3] - win[1])

    def to_canvas(pts: np.ndarray) -> list[tuple[float, float]]:
        return [((x - win[0]) * kx, (y - win[1]) * ky) for x, y in pts]

    img = Image.new("RGB", (size, size), MAP_STYLE["background"])
    draw = ImageDraw.Draw(img)
    for rings in src.building_rings:
        draw.polygon(to_canvas(rings[0]), fill=MAP_STYLE["building"], outline=MAP_STYLE["building_edge"],
                     width=supersample)
        for hole in rings[1:]:
            draw.polygon(to_canvas(hole), fill=MAP_STYLE["background"])
    px_per_m = kx / src.sx
    for layer, extra_m in (("road_casing", 2.0), ("road", 0.0)):
        for _name, line, lanes in src.roads:
            width = max(1, round((lanes * LANE_WIDTH_M + extra_m) * px_per_m))
            pts = to_canvas(line)
            draw.line(pts, fill=MAP_STYLE[layer], width=width, joint="curve")
            r = width / 2  # round caps so that joined pieces of one street look continuous
            for x, y in (pts[0], pts[-1]):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=MAP_STYLE[layer])
    return img.resize((tile_px, tile_px), Image.Resampling.LANCZOS)


def map_road_pixels(img: Image.Image) -> np.ndarray:
    """Boolean mask of the road fill colour in a rendered map (used by tests and content checks)."""
    a = np.asarray(img.convert("RGB")).astype(int)
    return (a.min(axis=2) >= 250)


def map_content_fraction(img: Image.Image) -> float:
    """Share of map pixels that are not background."""
    a = np.asarray(img.convert("RGB")).astype(int)
    return float((np.abs(a - np.array(MAP_STYLE["background"])).sum(axis=2) > 12).mean())


# ---------------------------------------------------------------- drone (oblique) view

def _camera_homography(heading_deg: float, tilt_deg: float, hfov_deg: float, out_px: int) -> np.ndarray:
    """3x3 H mapping output pixel (u, v, 1) to homogeneous ground (east, north, 1) metres for a camera
    at altitude 1 m looking at the origin, `tilt_deg` away from nadir, facing `heading_deg`."""
    psi, t = math.radians(heading_deg), math.radians(tilt_deg)
    fwd_h = np.array([math.sin(psi), math.cos(psi), 0.0])  # horizontal look direction (east, north, up)
    forward = math.sin(t) * fwd_h + np.array([0.0, 0.0, -math.cos(t)])
    right = np.array([math.cos(psi), -math.sin(psi), 0.0])
    up = np.cross(right, forward)  # camera up, tilted toward the look direction
    cam = -math.tan(t) * fwd_h + np.array([0.0, 0.0, 1.0])
    f = (out_px / 2) / math.tan(math.radians(hfov_deg) / 2)
    c = out_px / 2
    # ray(u, v) = forward + (u - c)/f * right - (v - c)/f * up  =  R @ [u, v, 1]
    rmat = np.stack([right / f, -up / f, forward - c / f * right + c / f * up], axis=1)
    # ground = cam + s * ray with s = -cam_z / ray_z  ->  homogeneous [cam_xy * ray_z - cam_z * ray_xy, ray_z]
    h = np.stack([cam[0] * rmat[2] - cam[2] * rmat[0], cam[1] * rmat[2] - cam[2] * rmat[1], rmat[2]])
    return h


def drone_view(src: Source, win: Window, out_px: int, heading_deg: float, tilt_deg: float,
               fill: float, hfov_deg: float = 60.0) -> tuple[Image.Image, float]:
    """Simulated oblique drone photo of the tile centre (a perspective warp of the 10 cm orthophoto,
    as University-1652 renders drone views around a target). The altitude is the largest one whose
    whole view stays inside the tile (no pixel of a neighbouring tile), times `fill` in (0, 1].
    Returns the image and the altitude in metres."""
    h1 = _camera_homography(heading_deg, tilt_deg, hfov_deg, out_px)
    cx, cy = (win[0] + win[2]) / 2, (win[1] + win[3]) / 2
    corners = np.array([[0, 0, 1], [out_px, 0, 1], [0, out_px, 1], [out_px, out_px, 1]], float) @ h1.T
    east, north = corners[:, 0] / corners[:, 2], corners[:, 1] / corners[:, 2]
    dx, dy = east / src.sx, -north / src.sy  # source pixels per metre of altitude
    limits = []
    for d, lo, hi, c in ((dx, win[0], win[2], cx), (dy, win[1], win[3], cy)):
        for v in d:
            if v > 0:
                limits.append((hi - c - 1) / v)
            elif v < 0:
                limits.append((lo - c) / v)
    altitude = min(limits) * fill
    # output pixel -> source pixel: scale ground metres by altitude, then metres -> pixels
    to_px = np.array([[altitude / src.sx, 0, cx], [0, -altitude / src.sy, cy], [0, 0, 1]])
    m = to_px @ h1
    m = m / m[2, 2]
    img = src.image.transform((out_px, out_px), Image.Transform.PERSPECTIVE,
                                             tuple(m.ravel()[:8]), Image.Resampling.BICUBIC)
    return img, altitude


# ---------------------------------------------------------------- panorama and ground photos

def _bilinear(a: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Sample an H x W x C array at float coordinates (clamped to the edge)."""
    h, w = a.shape[:2]
    xs = np.clip(xs, 0, w - 1.001).astype(np.float32)  # float32 halves the work; 8-bit output anyway
    ys = np.clip(ys, 0, h - 1.001).astype(np.float32)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = (xs - x0)[..., None], (ys - y0)[..., None]
    top = a[y0, x0] * (1 - fx) + a[y0, x0 + 1] * fx
    bottom = a[y0 + 1, x0] * (1 - fx) + a[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def panorama(src: Source, win: Window, height: int, width: int, north_col_frac: float) -> Image.Image:
    """Polar transform of the tile's disc into a pseudo-panorama (as in SAFA / CVUSA polar
    baselines): columns sweep the heading clockwise, the top row is the tile edge (far), the bottom
    row the centre (near). North sits at column `north_col_frac * width` (a random yaw, recorded)."""
    cx, cy = (win[0] + win[2]) / 2, (win[1] + win[3]) / 2
    radius_m = min((win[2] - win[0]) * src.sx, (win[3] - win[1]) * src.sy) / 2 - max(src.sx, src.sy)
    rows = (height - np.arange(height) - 0.5) / height * radius_m  # top = far
    cols = ((np.arange(width) + 0.5) / width - north_col_frac) * 2 * math.pi
    r, theta = np.meshgrid(rows, cols, indexing="ij")
    xs = cx + r * np.sin(theta) / src.sx
    ys = cy - r * np.cos(theta) / src.sy
    x0, y0 = int(max(0, xs.min() - 2)), int(max(0, ys.min() - 2))
    x1, y1 = int(min(src.size[0], xs.max() + 3)), int(min(src.size[1], ys.max() + 3))
    patch = np.asarray(src.image.crop((x0, y0, x1, y1)).convert("RGB"), dtype=np.float32)
    pano = _bilinear(patch, xs - x0, ys - y0)
    img = Image.fromarray(np.clip(pano, 0, 255).round().astype(np.uint8), "RGB")
    img = ImageEnhance.Contrast(img).enhance(1.15)  # processed differently from the satellite view
    return img.convert(src.image.mode)


def ground_photo(pano: Image.Image, yaw_deg: float, fov_deg: float, out_px: int,
                 north_col_frac: float) -> Image.Image:
    """A pinhole-camera crop of the panorama: columns follow atan of the image-plane offset around
    heading `yaw_deg`; rows keep the panorama's far-to-near sweep."""
    a = np.asarray(pano.convert("RGB"), dtype=np.float32)
    h, w = a.shape[:2]
    f = (out_px / 2) / math.tan(math.radians(fov_deg) / 2)
    u = np.arange(out_px) + 0.5 - out_px / 2
    heading = math.radians(yaw_deg) + np.arctan(u / f)  # radians, clockwise from north
    cols = (north_col_frac + heading / (2 * math.pi)) % 1.0 * w - 0.5
    rows = (np.arange(out_px) + 0.5) / out_px * h - 0.5
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    # wrap horizontally: append the first column so the seam interpolates
    a = np.concatenate([a, a[:, :1]], axis=1)
    img = _bilinear(a, cc % w, rr)
    out = Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")
    return out.convert(pano.mode)
