"""Videos of latent paths: three panels per frame and an mp4 / gif writer.

Each frame (RGB uint8, 288 × 800, both multiples of 16 so ffmpeg never rescales it) shows

    caption: frame index / count, the path's mode, the IK fit's residual
    ┌───────────────────┬──────────────────────┬────────────────────────┐
    │ generated depth   │ mesh of the decoded  │ decoded skeleton over  │
    │ (colour-mapped)   │ pose (IK → renderer) │ the generated depth    │
    └───────────────────┴──────────────────────┴────────────────────────┘

The middle panel fits the articulated hand to the decoded joints
(synthgen.hand.ik.fit_hand → HandPose) and renders it with the mesh baseline's renderer
(BaselineRenderer.render_poses): where it disagrees with the left panel, the generator and the
pose decoder disagree. Without synthgen.hand.ik the panel says so and the rest still renders.

mp4: libx264 via imageio-ffmpeg (yuv420p, quality 8), frames streamed to ffmpeg. gif: pillow,
looping; pillow keeps every frame until the file is written, so gifs are limited to
MAX_GIF_FRAMES frames (use mp4 for long walks).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from synthgen.conventions import BACKGROUND
from synthgen.data.preview import draw_skeleton
from synthgen.errors import InputError, OutputExistsError, SynthgenError
from synthgen.hand import camera

UPSCALE = 2
GAP = 8
CAPTION = 24
VIDEO_SUFFIXES = (".mp4", ".gif")
MAX_GIF_FRAMES = 1500  # ~1 GB of frames held by pillow
PANEL_TITLES = ("generated depth", "mesh (IK fit)", "decoded skeleton")
#: Normalised depth range of the colour map, fixed for every frame so colours do not flicker
#: (preview.colorize_depth stretches each image to its own range, which suits grids, not video).
COLOUR_RANGE = (-0.6, 0.6)


def check_video_path(path: Path, overwrite: bool = False, frames: int = 0) -> None:
    """Refuse bad video targets before any work is done."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"must end in .mp4 or .gif, got {path.name}", option="video")
    if path.suffix.lower() == ".gif" and frames > MAX_GIF_FRAMES:
        raise InputError(f"a gif is limited to {MAX_GIF_FRAMES} frames ({frames} asked); write an .mp4")
    if not path.parent.is_dir():
        raise InputError(f"directory {path.parent} does not exist", option="video")
    if path.exists() and not overwrite:
        raise OutputExistsError(path)


def frame_size(crop_size: int) -> tuple[int, int]:
    """(height, width) of a frame: three upscaled panels, gaps, a caption, padded to 16."""
    panel = crop_size * UPSCALE
    return _round16(CAPTION + panel + GAP), _round16(3 * panel + 4 * GAP)


def _round16(x: int) -> int:
    return -(-x // 16) * 16


class MeshPanels:
    """Decoded joints → IK fit → mesh-rendered normalised crops (lazily started renderer)."""

    def __init__(self) -> None:
        self._renderer = None
        try:
            from synthgen.hand.ik import fit_hand
        except ImportError:
            fit_hand = None
        self.fit_hand: Callable | None = fit_hand

    @property
    def available(self) -> bool:
        return self.fit_hand is not None

    def __call__(self, joints: np.ndarray, center_z: np.ndarray, cube_mm: float
                 ) -> tuple[np.ndarray | None, np.ndarray]:
        """(n, 21, 3) mm → (n, S, S) mesh crops normalised around `center_z` (None without IK),
        (n,) max IK residual mm (NaN without IK)."""
        n = len(joints)
        if self.fit_hand is None:
            return None, np.full(n, np.nan)
        import torch

        from synthgen.hand.baseline import BaselineRenderer

        if self._renderer is None:
            self._renderer = BaselineRenderer(seed=0)
        result = self.fit_hand(torch.as_tensor(np.asarray(joints, np.float32)))
        residual = np.broadcast_to(np.asarray(_numpy(result.max_residual_mm), np.float64).reshape(-1), (n,))
        crops = self._renderer.render_poses(result.pose)
        metric = camera.denormalize_depth(crops.depth, crops.center[:, 2], cube_mm)
        return camera.normalize_depth(metric, center_z, cube_mm), residual


def _numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x


def _text(img: np.ndarray, xy: tuple[int, int], text: str, fill=(230, 230, 230)) -> np.ndarray:
    from PIL import Image, ImageDraw

    pil = Image.fromarray(img)
    ImageDraw.Draw(pil).text(xy, text, fill=fill)
    return np.asarray(pil)


def colour_depth(depth_norm: np.ndarray) -> np.ndarray:
    """(H, W) normalised crop → (H, W, 3) uint8 on a fixed scale: near bright, far dark, no data black."""
    from matplotlib import colormaps

    rgb = np.zeros(depth_norm.shape + (3,), np.uint8)
    foreground = depth_norm < BACKGROUND - 1e-3
    lo, hi = COLOUR_RANGE
    t = np.clip((depth_norm[foreground] - lo) / (hi - lo), 0.0, 1.0)
    rgb[foreground] = (colormaps["magma"](1.0 - 0.85 * t)[:, :3] * 255).astype(np.uint8)
    return rgb


def compose_frame(depth: np.ndarray, pose: np.ndarray, center: np.ndarray, mesh_depth: np.ndarray | None,
                  caption: str, cube_mm: float, joint_layout: str = "hands2017") -> np.ndarray:
    """One (H, W, 3) uint8 frame from a generated crop, its decoded pose and the mesh render.

    `mesh_depth` must be normalised around the same centre depth as `depth` (see MeshPanels).
    """
    size = depth.shape[0]
    height, width = frame_size(size)
    panel = size * UPSCALE
    frame = np.full((height, width, 3), 30, np.uint8)

    def up(rgb: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(rgb, UPSCALE, 0), UPSCALE, 1)

    uv = camera.project(pose, camera.crop_intrinsics(center, cube_mm, size))[:, :2]
    panels = [up(colour_depth(depth)),
              up(colour_depth(mesh_depth)) if mesh_depth is not None else np.full((panel, panel, 3), 60, np.uint8),
              draw_skeleton(up(colour_depth(depth)), (uv + 0.5) * UPSCALE - 0.5, joint_layout)]
    for i, img in enumerate(panels):
        x = GAP + i * (panel + GAP)
        frame[CAPTION:CAPTION + panel, x:x + panel] = img
    for i, title in enumerate(PANEL_TITLES):
        frame = _text(frame, (GAP + i * (panel + GAP) + 4, CAPTION + 4), title, (200, 200, 200))
    if mesh_depth is None:
        why = "needs synthgen.hand.ik" if joint_layout == "hands2017" else f"no hand model for {joint_layout} joints"
        frame = _text(frame, (GAP + panel + GAP + 8, CAPTION + panel // 2), why, (240, 180, 80))
    return _text(frame, (GAP, 6), caption)


class VideoWriter:
    """Streams frames into an mp4 (imageio-ffmpeg) or collects them for a gif (pillow).

    Frames go to a `.partial` file beside `path`, renamed to `path` by `close`: a crash, a
    full disk or a kill never leaves a truncated video under the real name, nor destroys the
    video an --overwrite was going to replace."""

    def __init__(self, path: str | Path, fps: float = 24.0):
        self.path = Path(path)
        self._partial = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.partial{self.path.suffix}")
        self.fps = float(fps)
        self.count = 0
        self._gif: list[np.ndarray] = []
        self._mp4 = None
        if self.path.suffix.lower() == ".mp4":
            import imageio.v2 as imageio

            # Frames are multiples of 16 already; macro_block_size=16 then never resizes them.
            self._mp4 = imageio.get_writer(self._partial, format="FFMPEG", mode="I", fps=self.fps, codec="libx264",
                                           quality=8, pixelformat="yuv420p", macro_block_size=16)

    def append(self, frame: np.ndarray) -> None:
        if self._mp4 is not None:
            self._mp4.append_data(frame)
        else:
            if len(self._gif) >= MAX_GIF_FRAMES:
                raise InputError(f"a gif holds at most {MAX_GIF_FRAMES} frames in memory; write an .mp4")
            self._gif.append(frame)
        self.count += 1

    def close(self) -> Path:
        try:
            if self._mp4 is not None:
                self._mp4.close()
                self._check_mp4()
            else:
                import imageio.v3 as iio

                iio.imwrite(self._partial, np.stack(self._gif), plugin="pillow", duration=1000.0 / self.fps, loop=0)
            os.replace(self._partial, self.path)
        except BaseException:
            self._partial.unlink(missing_ok=True)
            raise
        return self.path

    def _check_mp4(self) -> None:
        """ffmpeg reports a failed write (a full disk) only on its own stderr and imageio does not
        raise, so count the frames of the finished file (~0.2 s for 200 frames) before keeping it."""
        from imageio_ffmpeg import count_frames_and_secs

        try:
            frames = count_frames_and_secs(str(self._partial))[0]
        except (RuntimeError, OSError):
            frames = -1
        if frames != self.count:
            free = shutil.disk_usage(self._partial.parent).free
            raise SynthgenError(f"cannot write {self.path}: ffmpeg did not finish it ({self.count} frames given, "
                                f"{max(frames, 0)} readable; {free / 1e6:.1f} MB free on its disk)")

    def abort(self) -> None:
        if self._mp4 is not None:
            try:
                self._mp4.close()
            except (OSError, RuntimeError):  # ffmpeg already failed (disk full): nothing left to keep
                pass
        self._partial.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_frames(video: VideoWriter, samples, mesh: MeshPanels | None, *, first_index: int, total: int, mode: str,
                 cube_mm: float, joint_layout: str = "hands2017") -> None:
    """Append one frame per sample of `samples` (GeneratedSamples) with its caption.

    mesh None: no mesh panel (poses that are not the canonical 21 joints have no hand model).
    """
    if mesh is None:
        mesh_depth, residual = None, np.full(len(samples), np.nan)
    else:
        mesh_depth, residual = mesh(samples.pose, samples.center[:, 2], cube_mm)
    for i in range(len(samples)):
        k = first_index + i
        ik = f"IK max {residual[i]:.1f} mm" if np.isfinite(residual[i]) else "no IK"
        caption = f"frame {k + 1}/{total}   {mode}   {ik}"
        video.append(compose_frame(samples.depth[i], samples.pose[i], samples.center[i],
                                   None if mesh_depth is None else mesh_depth[i], caption, cube_mm, joint_layout))
