"""Watch what was learned: film one episode of a policy and write it as GIF, MP4 or HTML.

    rlx eval runs/x --video pendulum.gif          # the run's deterministic policy, seed 0

One episode of the deterministic policy runs as one compiled ``lax.scan`` (the same wrappers
and frozen observation statistics as training's evaluation), and the env state of every step
comes back to the host, where it is drawn:

* gymnax classic control (Pendulum, CartPole, MountainCar, MountainCarContinuous, Acrobot) and
  our own KeyDoor, Household and PointMaze: frames drawn from the state with Pillow's ImageDraw
  (it comes with matplotlib; a few milliseconds a frame), written as ``.gif`` (Pillow, which comes with matplotlib), ``.mp4`` (needs
  ``imageio`` and ``imageio-ffmpeg``: ``pip install "rlx[video]"``) or ``.html`` (the GIF inside
  a page);
* brax: ``.html`` is brax's own 3-D viewer (``brax.io.html``); ``.gif`` / ``.mp4`` frames need
  MuJoCo's renderer (an OpenGL context: ``MUJOCO_GL=egl`` or ``osmesa``);
* any other env that defines ``render_frame(state, params) -> uint8 (H, W, 3)`` or
  ``render_text(state) -> str`` (see :mod:`rlx.envs.contract`).

Every check that can fail (the file extension, a missing package, an env nothing can draw) is
made before the episode runs.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rlx import envs as rlx_envs
from rlx.core.running_stats import normalize
from rlx.envs.contract import step_without_reset, steps_without_reset

__all__ = [
    "VIDEO_FORMATS",
    "Episode",
    "VideoError",
    "VideoReport",
    "check_video_path",
    "frame_drawer",
    "record_run",
    "rollout",
    "write_video",
]

VIDEO_FORMATS = (".gif", ".mp4", ".html")
_FRAME_PIXELS = 320  # square frames, a multiple of 16 so every MP4 codec takes them as they are


class VideoError(ValueError):
    """A video that cannot be written: unknown format, missing package, nothing to draw with."""


def check_video_path(path, env=None) -> Path:
    """Refuse an unknown extension or a format whose package is missing, before any work.

    With ``env``, also refuse an env that cannot be drawn in that format.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise VideoError(
            f"cannot write a video as {path.name!r}: the extension must be one of "
            f"{', '.join(VIDEO_FORMATS)} (e.g. --video episode.gif)"
        )
    if suffix == ".mp4":
        try:
            import imageio  # noqa: F401
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise VideoError(
                f"writing {path.name} needs imageio and imageio-ffmpeg (pip install \"rlx[video]\"); "
                f"or write a GIF instead (--video {path.with_suffix('.gif').name})"
            ) from None
    if env is not None:
        if _is_brax(env):
            if suffix != ".html":
                _check_mujoco_renderer(path)
        else:
            frame_drawer(env)  # raises when nothing can draw this env
    return path


# ---------------------------------------------------------------------------------------------
# One episode, compiled
# ---------------------------------------------------------------------------------------------
class Episode(NamedTuple):
    """One filmed episode, on the host. ``states`` has ``length + 1`` entries when the env's
    last state is known (gymnax envs: the state the episode ended in), else ``length``."""

    env: Any
    env_params: Any
    states: list  # env state per frame (unbatched pytrees of numpy arrays)
    actions: np.ndarray  # (length, ...) the actions the env received
    rewards: np.ndarray  # (length,)
    terminated: bool
    truncated: bool

    @property
    def length(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def episode_return(self) -> float:
        return float(self.rewards.sum())


def _is_brax(env) -> bool:
    return isinstance(env, rlx_envs.BraxAdapter)


def rollout(
    env, env_params, policy: Callable, key, *, obs_stats=None, max_steps: int | None = None
) -> Episode:
    """Run one episode of ``policy(obs, key) -> action`` (batched obs, as in evaluation) on
    ``env`` in one compiled scan and bring its states to the host.

    The policy acts through the wrappers training used (actions in [-1, 1] rescaled onto a Box's
    bounds) and sees observations normalized by ``obs_stats`` when given.
    """
    limit = rlx_envs.episode_limit(env, env_params) if max_steps is None else int(max_steps)
    if limit < 1:
        raise ValueError(f"max_steps must be >= 1, got {limit}")
    layer, rescale = rlx_envs.make_vec_env(env, env_params, 1), None
    while isinstance(layer, rlx_envs.Wrapper):  # the action rescaling training's stack applies
        if isinstance(layer, rlx_envs.RescaleAction):
            rescale = layer
        layer = layer.env
    direct = steps_without_reset(env)

    def act(obs, key):
        seen = obs.astype(jnp.float32)[None]
        if obs_stats is not None:
            seen = normalize(obs_stats, seen)
        action = policy(seen, key)[0]
        return action if rescale is None else rescale.to_inner_action(action, env_params)

    def env_step(key, state, action):
        if direct:
            obs, state, reward, terminated, truncated, _ = step_without_reset(env, key, state, action, env_params)
        else:
            obs, state, reward, terminated, truncated, _ = env.step(key, state, action, env_params)
        return obs, state, reward, terminated, truncated

    @jax.jit
    def run(key):
        k_reset, k_loop = jax.random.split(key)
        obs, state = env.reset(k_reset, env_params)

        def body(carry, key):
            obs, state, alive = carry
            k_act, k_env = jax.random.split(key)
            action = act(obs, k_act)
            obs, state, reward, terminated, truncated = env_step(k_env, state, action)
            out = (state, action, reward, terminated, truncated, alive)
            return (obs, state, alive & ~(terminated | truncated)), out

        _, out = jax.lax.scan(body, (obs, state, jnp.array(True)), jax.random.split(k_loop, limit))
        return state, out

    first, (states, actions, rewards, terminated, truncated, alive) = jax.device_get(run(key))
    length = int(np.sum(alive))
    ended = length - 1
    term, trunc = bool(terminated[ended]), bool(truncated[ended])
    kept = length if (direct or not (term or trunc)) else length - 1  # an auto-reset state is not the episode's
    frames = [first] + [jax.tree.map(lambda x, i=i: x[i], states) for i in range(kept)]
    return Episode(env, env_params, frames, np.asarray(actions[:length]), np.asarray(rewards[:length], np.float64), term, trunc)


# ---------------------------------------------------------------------------------------------
# Drawing one frame (Pillow's ImageDraw: a few milliseconds a frame)
# ---------------------------------------------------------------------------------------------
_HEADER = 32  # caption rows above the scene; 320 x 352 frames (multiples of 16)


@functools.lru_cache(maxsize=8)
def _font(size: int = 12):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


class _Canvas:
    """A square scene of world box [x0, x1] x [y0, y1] (y up) under a two-line caption."""

    def __init__(self, xlim, ylim, caption: str, size: int = _FRAME_PIXELS):
        from PIL import Image, ImageDraw

        self.size = size
        self.image = Image.new("RGB", (size, size + _HEADER), (255, 255, 255))
        self.draw = ImageDraw.Draw(self.image)
        (x0, x1), (y0, y1) = xlim, ylim
        self.scale = (size - 16) / max(x1 - x0, y1 - y0)
        self.origin = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        self.text(caption, (4, 2))

    def px(self, x, y) -> tuple[float, float]:
        return (self.size / 2 + (x - self.origin[0]) * self.scale,
                _HEADER + self.size / 2 - (y - self.origin[1]) * self.scale)

    def line(self, points, color, width: float) -> None:
        self.draw.line([self.px(x, y) for x, y in points], fill=color, width=max(1, int(width * self.scale)), joint="curve")

    def disc(self, center, radius: float, color) -> None:
        u, v = self.px(*center)
        r = radius * self.scale
        self.draw.ellipse([u - r, v - r, u + r, v + r], fill=color)

    def box(self, x0, y0, x1, y1, color) -> None:
        (u0, v0), (u1, v1) = self.px(x0, y1), self.px(x1, y0)
        self.draw.rectangle([u0, v0, u1, v1], fill=color)

    def text(self, text: str, at=(4, _HEADER + 4), size: int = 12) -> None:
        self.draw.multiline_text(at, text, fill=(0, 0, 0), font=_font(size), spacing=2)

    def pixels(self) -> np.ndarray:
        return np.asarray(self.image, np.uint8)


def _pendulum(s, p, caption):
    theta, length = float(s.theta), float(p.l)
    c = _Canvas((-1.3 * length, 1.3 * length), (-1.3 * length, 1.3 * length),
                f"{caption}\ntheta {theta:+.2f}  torque {float(s.last_u):+.2f}")
    tip = (-math.sin(theta) * length, math.cos(theta) * length)  # theta = 0 is upright
    c.line([(0, 0), tip], (200, 60, 50), 0.12)
    c.disc(tip, 0.06, (200, 60, 50))
    c.disc((0, 0), 0.05, (0, 0, 0))
    u = float(s.last_u) / float(p.max_torque)  # applied torque as a bar under the pivot
    c.box(min(0.0, u), -1.2 * length, max(0.0, u), -1.12 * length, (40, 100, 200))
    return c.pixels()


def _cartpole(s, p, caption):
    x, theta, pole, limit = float(s.x), float(s.theta), 2.0 * float(p.length), float(p.x_threshold)
    c = _Canvas((-limit - 0.2, limit + 0.2), (-1.0, 1.5), f"{caption}\nx {x:+.2f}  theta {theta:+.3f}")
    c.line([(-limit, 0), (limit, 0)], (120, 120, 120), 0.01)
    c.box(x - 0.25, -0.08, x + 0.25, 0.08, (30, 30, 30))
    c.line([(x, 0.08), (x + pole * math.sin(theta), 0.08 + pole * math.cos(theta))], (220, 140, 40), 0.06)
    c.disc((x, 0.08), 0.03, (90, 90, 200))
    return c.pixels()


def _mountain_car(s, p, caption):
    lo, hi, pos, goal = float(p.min_position), float(p.max_position), float(s.position), float(p.goal_position)
    height = lambda x: 0.45 * np.sin(3 * x) + 0.55  # noqa: E731
    c = _Canvas((lo, hi), (-0.3, 1.3), f"{caption}\nposition {pos:+.3f}  velocity {float(s.velocity):+.4f}")
    xs = np.linspace(lo, hi, 100)
    c.line(list(zip(xs, height(xs), strict=True)), (0, 0, 0), 0.012)
    c.line([(goal, height(goal)), (goal, height(goal) + 0.15)], (40, 160, 60), 0.012)
    c.box(goal, height(goal) + 0.1, goal + 0.08, height(goal) + 0.15, (40, 160, 60))
    c.disc((pos, height(pos) + 0.04), 0.045, (40, 100, 200))
    return c.pixels()


def _acrobot(s, p, caption):
    t1, t2 = float(s.joint_angle1), float(s.joint_angle2)
    l1, l2 = float(p.link_length_1), float(p.link_length_2)
    p1 = (l1 * math.sin(t1), -l1 * math.cos(t1))  # both angles 0: hanging straight down
    p2 = (p1[0] + l2 * math.sin(t1 + t2), p1[1] - l2 * math.cos(t1 + t2))
    reach = l1 + l2 + 0.2
    c = _Canvas((-reach, reach), (-reach, reach),
                f"{caption}\nangles {t1:+.2f} {t2:+.2f}  tip height {-math.cos(t1) - math.cos(t1 + t2):+.2f}")
    c.line([(-reach, l1), (reach, l1)], (40, 160, 60), 0.01)  # the tip must rise above this line
    c.line([(0, 0), p1, p2], (40, 100, 200), 0.1)
    c.disc((0, 0), 0.06, (0, 0, 0))
    c.disc(p1, 0.06, (0, 0, 0))
    return c.pixels()


# wall, locked door, key, goal, agent (drawn in this order, so the agent is on top); floor white
_KEYDOOR_COLORS = ((70, 70, 70), (150, 90, 40), (230, 190, 30), (60, 180, 75), (40, 90, 220))


def _keydoor(env, layers_fn, s, p, caption):
    layers = np.asarray(jax.device_get(layers_fn(s)), bool)  # (H, W, channels)
    rows, cols = layers.shape[:2]
    held = [k for k, h in enumerate(np.asarray(s.key_held)) if h]
    c = _Canvas((0, cols), (0, rows), f"{caption}\nkeys held {held}")
    for r in range(rows):
        for col in range(cols):
            x0, y0 = col, rows - 1 - r
            c.box(x0 + 0.03, y0 + 0.03, x0 + 0.97, y0 + 0.97, (235, 235, 235))
            for channel in range(len(_KEYDOOR_COLORS)):
                if layers[r, col, channel]:
                    if channel == 4:
                        c.disc((x0 + 0.5, y0 + 0.5), 0.32, _KEYDOOR_COLORS[channel])
                    else:
                        c.box(x0 + 0.03, y0 + 0.03, x0 + 0.97, y0 + 0.97, _KEYDOOR_COLORS[channel])
    return c.pixels()


def _text_frame(text: str, caption: str) -> np.ndarray:
    import textwrap

    c = _Canvas((0, 1), (0, 1), caption)
    c.text("\n".join(textwrap.fill(line, 44) for line in text.splitlines()))
    return c.pixels()


def _image_frame(image: np.ndarray, caption: str) -> np.ndarray:
    from PIL import Image

    c = _Canvas((0, 1), (0, 1), caption)
    picture = Image.fromarray(np.asarray(image, np.uint8)[..., :3])
    picture.thumbnail((c.size - 8, c.size - 8), Image.NEAREST)  # shrinks a large image, never enlarges
    factor = max(1, (c.size - 8) // max(picture.size))
    picture = picture.resize((picture.size[0] * factor, picture.size[1] * factor), Image.NEAREST)
    c.image.paste(picture, ((c.size - picture.size[0]) // 2, _HEADER + (c.size - picture.size[1]) // 2))
    return c.pixels()


def frame_drawer(env) -> Callable[[Any, Any, str], np.ndarray]:
    """``draw(state, params, caption) -> uint8 (H, W, 3)`` for ``env``; a VideoError naming
    what can be drawn when nothing can draw it."""
    from gymnax.environments import classic_control as cc

    from rlx.envs.household import Household
    from rlx.envs.keydoor import KeyDoor
    from rlx.envs.maze import PointMaze, draw_frame

    drawers = {cc.Pendulum: _pendulum, cc.CartPole: _cartpole, cc.MountainCar: _mountain_car,
               cc.ContinuousMountainCar: _mountain_car, cc.Acrobot: _acrobot}
    for cls, draw in drawers.items():
        if isinstance(env, cls):
            return draw
    if isinstance(env, KeyDoor):
        layers_fn = jax.jit(env._layers)  # compiled once per video, not op by op per frame
        return lambda state, params, caption: _keydoor(env, layers_fn, state, params, caption)
    if isinstance(env, PointMaze):
        return lambda state, params, caption: _image_frame(
            draw_frame(env, np.asarray(state.position), int(params.goal_index),
                       pixels_per_cell=max(4, (_FRAME_PIXELS - 16) // max(env.height, env.width))), caption)
    if callable(getattr(env, "render_frame", None)):
        def draw(state, params, caption):
            frame = np.asarray(env.render_frame(state, params))
            if frame.ndim != 3 or frame.shape[-1] not in (3, 4):
                raise VideoError(f"{type(env).__name__}.render_frame must return an (H, W, 3) image, got shape {frame.shape}")
            return _image_frame(frame, caption)
        return draw
    if callable(getattr(env, "render_text", None)) or isinstance(env, Household):
        return lambda state, params, caption: _text_frame(env.render_text(state), caption)
    name = getattr(env, "name", type(env).__name__)
    raise VideoError(
        f"no way to draw {name}: frames are drawn for gymnax Pendulum, CartPole, MountainCar, "
        f"MountainCarContinuous and Acrobot, rlx KeyDoor, Household and PointMaze, brax envs "
        f"(.html), and any env with a render_frame(state, params) or render_text(state) method"
    )


def _default_fps(env, params) -> int:
    """Real time where the env says how long a step is (GIF frames last >= 20 ms)."""
    for field in ("dt", "tau"):
        dt = getattr(params, field, None)
        if isinstance(dt, (int, float)) and dt > 0:
            return int(min(50, max(4, round(1.0 / dt) * (3 if field == "dt" and dt >= 0.1 else 1))))
    if _is_brax(env):
        return int(min(50, max(4, round(1.0 / float(env.brax_env.dt)))))
    return 30 if rlx_envs.is_continuous(env.action_space(params)) else 4


# ---------------------------------------------------------------------------------------------
# Writing the file
# ---------------------------------------------------------------------------------------------
def _progress(total: int, enabled: bool, what: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=what, unit="frame", leave=False)


def _gif_bytes(frames: list[np.ndarray], fps: int) -> bytes:
    from PIL import Image

    # Frames of flat colours: the fast octree quantizer keeps them exact and is ~10x quicker
    images = [Image.fromarray(f).quantize(colors=255, method=Image.Quantize.FASTOCTREE) for f in frames]
    buffer = io.BytesIO()
    # GIF stores frame times in 10 ms units
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(20, int(round(1000 / fps / 10)) * 10), loop=0)
    return buffer.getvalue()


def _check_mujoco_renderer(path: Path) -> None:
    try:
        import mujoco

        mujoco.GLContext(8, 8).free()
    except Exception as err:
        raise VideoError(
            f"brax frames for {path.name} need MuJoCo's renderer, which has no OpenGL context here "
            f"({type(err).__name__}: {err}); set MUJOCO_GL=egl (GPU) or MUJOCO_GL=osmesa, or write "
            f"brax's 3-D viewer instead (--video {path.with_suffix('.html').name})"
        ) from None


def _brax_pipeline_states(episode: Episode) -> list:
    return [state.brax_state.pipeline_state for state in episode.states]


@dataclasses.dataclass(frozen=True)
class VideoReport:
    path: Path
    frames: int
    episode_return: float
    episode_length: int
    terminated: bool
    truncated: bool

    def describe(self) -> str:
        end = "terminated" if self.terminated else "truncated" if self.truncated else "cut at the step limit"
        return (f"wrote {self.path}: {self.frames} frames, one episode of {self.episode_length} steps "
                f"({end}), return {self.episode_return:.1f}")


def write_video(episode: Episode, path, *, fps: int | None = None, progress: bool = True, title: str = "") -> VideoReport:
    """Write ``episode`` to ``path`` (``.gif``, ``.mp4`` or ``.html``, see the module docstring)."""
    env, params = episode.env, episode.env_params
    path = check_video_path(path, env)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    fps = int(fps or _default_fps(env, params))
    if fps < 1:
        raise VideoError(f"fps must be >= 1, got {fps}")
    n = len(episode.states)
    if _is_brax(env) and suffix == ".html":
        from brax.io import html

        page = html.render(env.brax_env.sys, _brax_pipeline_states(episode), colab=False)
        path.write_text(page)
        return VideoReport(path, n, episode.episode_return, episode.length, episode.terminated, episode.truncated)

    bar = _progress(n, progress, f"drawing {path.name}")
    frames = []
    if _is_brax(env):
        from brax.io import image

        # one MuJoCo renderer for the whole episode
        rendered = image.render_array(env.brax_env.sys, _brax_pipeline_states(episode), _FRAME_PIXELS + _HEADER, _FRAME_PIXELS)
        frames = [np.asarray(f, np.uint8)[..., :3] for f in rendered]
        if bar is not None:
            bar.update(n)
    else:
        draw = frame_drawer(env)
        total = 0.0
        for t, state in enumerate(episode.states):
            if t > 0:
                total += float(episode.rewards[t - 1])
            frames.append(draw(state, params, f"{title + '  ' if title else ''}step {t}  return {total:.1f}"))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    if suffix == ".gif":
        path.write_bytes(_gif_bytes(frames, fps))
    elif suffix == ".mp4":
        import imageio.v2 as imageio

        with imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=16) as writer:
            for frame in frames:
                writer.append_data(frame)
    else:  # .html: the GIF inside a page
        data = base64.b64encode(_gif_bytes(frames, fps)).decode("ascii")
        heading = title or getattr(env, "name", type(env).__name__)
        path.write_text(
            f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{heading}</title></head>\n"
            f"<body><h3>{heading}</h3><p>{episode.length} steps, return {episode.episode_return:.1f}</p>\n"
            f"<img src='data:image/gif;base64,{data}' alt='episode'></body></html>\n"
        )
    return VideoReport(path, len(frames), episode.episode_return, episode.length, episode.terminated, episode.truncated)


def record_run(
    run_dir,
    path,
    *,
    seed_index: int = 0,
    seed: int = 0,
    evaluation: int | None = None,
    fps: int | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    trained=None,
) -> VideoReport:
    """Film one episode of a saved run's deterministic policy (seed ``seed_index`` of the run;
    the episode drawn from ``seed``) and write it to ``path``.

    ``trained``: an already restored :class:`rlx.run.checkpoint.TrainedRun` of ``run_dir``.
    """
    from rlx.run.checkpoint import load_run_spec, load_trained_run

    check_video_path(path)
    if trained is None:
        spec = load_run_spec(run_dir)
        if not 0 <= seed_index < spec.num_seeds:
            raise ValueError(f"seed index {seed_index} is out of range; the run trained {spec.num_seeds} seed(s)")
        env, _ = rlx_envs.make(spec.env, **spec.env_kwargs)
        check_video_path(path, env)  # before the checkpoint is read
        trained = load_trained_run(run_dir, evaluation)
    policy, obs_stats = trained.policy(seed_index)
    episode = rollout(trained.env, trained.env_params, policy, jax.random.PRNGKey(seed), obs_stats=obs_stats, max_steps=max_steps)
    title = f"{trained.spec.info.get('agent', '')} seed {seed_index}".strip()
    return write_video(episode, path, fps=fps, progress=progress, title=title)
