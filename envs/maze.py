"""PointMaze: a point mass in a continuous maze with walls and several goals (``rlx/PointMaze-v0``).

The maze is a text layout of unit cells: ``#`` wall, ``.`` floor, ``S`` start, ``G`` goal
(several allowed). The agent is a point at a continuous position (x, y) in maze units (x along
columns, y along rows, the cell of row ``r``, column ``c`` spans [c, c+1) x [r, r+1)). The action
(2,) in [-1, 1]^2 is its velocity for one step: the position moves by ``max_speed * action``
(``max_speed`` < 1 cell), one axis at a time, and stops just short of a wall or the outer border
(so the point slides along walls and never tunnels through one).

The observation is the position scaled to [-1, 1]^2 (:meth:`PointMaze.positions` maps it back).
The task reward is ``1`` on every step that ends within ``goal_radius`` of the goal
``params.goal_index`` selects (one of the layout's goals), else ``0``; the maze never
terminates and is truncated after ``max_steps_in_episode`` steps, so a return counts the steps
spent at the goal. :func:`goal_reward` is the same reward as a JAX function of (s, a, s'), which a
planner can apply to a reward-free dataset afterwards.

Coverage is exact: :func:`coverage` is the fraction of floor cells (optionally subdivided into
``resolution`` x ``resolution`` sub-cells) that contain at least one visited position, and
:func:`visitation_entropy` the entropy of the visit histogram over those cells.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment
from gymnax.environments.spaces import Box

__all__ = [
    "LAYOUTS",
    "PointMaze",
    "PointMazeParams",
    "PointMazeState",
    "coverage",
    "draw_frame",
    "goal_reward",
    "make_point_maze",
    "visitation_counts",
    "visitation_entropy",
]

LAYOUTS = {
    # four rooms joined by one-cell doors; start top-left, a goal in each other room
    "four_rooms": (
        "###########",
        "#S...#...G#",
        "#....#....#",
        "#.........#",
        "#....#....#",
        "##.#####.##",
        "#....#....#",
        "#....#....#",
        "#.........#",
        "#G...#...G#",
        "###########",
    ),
    # a small U: the start and the goal are one wall apart, the way round is 9 cells long
    "u_small": (
        "#######",
        "#S...G#",
        "#####.#",
        "#.....#",
        "#######",
    ),
    "open": (
        "#######",
        "#S...G#",
        "#.....#",
        "#.....#",
        "#G...G#",
        "#######",
    ),
}
_EPS = 1e-3  # how far short of a wall a blocked move stops


@struct.dataclass
class PointMazeState(environment.EnvState):
    position: jax.Array  # (2,) float32, maze units (x, y)


@struct.dataclass
class PointMazeParams(environment.EnvParams):
    max_steps_in_episode: int = 100
    goal_index: int = 0
    max_speed: float = 0.25
    goal_radius: float = 0.5
    start_noise: float = 0.1


class PointMaze(environment.Environment[PointMazeState, PointMazeParams]):
    def __init__(self, layout: str | tuple[str, ...] = "four_rooms"):
        super().__init__()
        rows = LAYOUTS[layout] if isinstance(layout, str) and layout in LAYOUTS else layout
        if isinstance(rows, str):
            raise ValueError(f"unknown maze layout {layout!r}; known: {', '.join(sorted(LAYOUTS))} (or a tuple of rows)")
        rows = tuple(rows)
        if not rows or len({len(r) for r in rows}) != 1:
            raise ValueError("maze layout needs at least one row, all rows of the same length")
        bad = sorted({ch for r in rows for ch in r} - set("#.SG"))
        if bad:
            raise ValueError(f"maze layout has unknown characters {bad}; allowed: '#', '.', 'S', 'G'")
        starts = [(c + 0.5, r + 0.5) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch == "S"]
        goals = [(c + 0.5, r + 0.5) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch == "G"]
        if len(starts) != 1 or not goals:
            raise ValueError(f"maze layout needs exactly one 'S' and at least one 'G'; got {len(starts)} and {len(goals)}")
        self.layout = rows
        self.height, self.width = len(rows), len(rows[0])
        self.walls_np = np.array([[ch == "#" for ch in row] for row in rows], bool)
        self.walls = jnp.asarray(self.walls_np)
        self.start = jnp.asarray(starts[0], jnp.float32)
        self.goals = jnp.asarray(goals, jnp.float32)  # (num_goals, 2)
        self.extent = jnp.asarray([self.width, self.height], jnp.float32)

    @property
    def default_params(self) -> PointMazeParams:
        return PointMazeParams()

    @property
    def name(self) -> str:
        return "PointMaze-v0"

    @property
    def num_goals(self) -> int:
        return int(self.goals.shape[0])

    def action_space(self, params=None) -> Box:
        return Box(-1.0, 1.0, (2,), jnp.float32)

    def observation_space(self, params=None) -> Box:
        return Box(-1.0, 1.0, (2,), jnp.float32)

    # ---- coordinates ----------------------------------------------------------------------
    def observe(self, position: jax.Array) -> jax.Array:
        """Maze position (x, y) -> observation in [-1, 1]^2."""
        return (2.0 * position / self.extent - 1.0).astype(jnp.float32)

    def positions(self, obs: jax.Array) -> jax.Array:
        """Observation(s) -> maze position(s) (x, y)."""
        return (jnp.asarray(obs, jnp.float32) + 1.0) * 0.5 * self.extent

    def goal_position(self, params: PointMazeParams) -> jax.Array:
        return self.goals[params.goal_index]

    def _is_wall(self, x, y) -> jax.Array:
        col, row = jnp.floor(x).astype(jnp.int32), jnp.floor(y).astype(jnp.int32)
        inside = (col >= 0) & (col < self.width) & (row >= 0) & (row < self.height)
        return ~inside | self.walls[jnp.clip(row, 0, self.height - 1), jnp.clip(col, 0, self.width - 1)]

    # ---- dynamics -------------------------------------------------------------------------
    def reset_env(self, key: jax.Array, params: PointMazeParams):
        noise = jax.random.uniform(key, (2,), jnp.float32, -1.0, 1.0) * params.start_noise
        state = PointMazeState(position=self.start + noise, time=0)
        return self.get_obs(state), state

    def move(self, position: jax.Array, velocity: jax.Array, max_speed) -> jax.Array:
        """One step of the point: x first, then y, each stopped just short of a wall."""
        delta = jnp.clip(velocity, -1.0, 1.0) * max_speed
        x, y = position[0], position[1]
        new_x = x + delta[0]
        blocked = self._is_wall(new_x, y)
        # |delta| < 1 cell, so a blocked move enters the neighbouring cell: stop at its border.
        border_x = jnp.where(delta[0] > 0, jnp.floor(x) + 1.0 - _EPS, jnp.floor(x) + _EPS)
        x = jnp.where(blocked, border_x, new_x)
        new_y = y + delta[1]
        blocked = self._is_wall(x, new_y)
        border_y = jnp.where(delta[1] > 0, jnp.floor(y) + 1.0 - _EPS, jnp.floor(y) + _EPS)
        y = jnp.where(blocked, border_y, new_y)
        return jnp.stack([x, y]).astype(jnp.float32)

    def step_env(self, key: jax.Array, state: PointMazeState, action, params: PointMazeParams):
        del key
        position = self.move(state.position, jnp.asarray(action, jnp.float32), params.max_speed)
        at_goal = jnp.linalg.norm(position - self.goal_position(params)) <= params.goal_radius
        state = state.replace(position=position, time=state.time + 1)
        info = {"at_goal": at_goal}
        return self.get_obs(state), state, at_goal.astype(jnp.float32), jnp.array(False), info

    def is_terminated(self, state: PointMazeState, params: PointMazeParams) -> jax.Array:
        return jnp.array(False)

    def get_obs(self, state: PointMazeState, params=None, key=None) -> jax.Array:
        return self.observe(state.position)

    # ---- rewards for planning ---------------------------------------------------------------
    def goal_reward(self, goal, radius: float = 0.5):
        """r(s, a, s') = 1[ ||pos(s') - goal|| <= radius ], the env's own reward for ``goal``
        (an index into the layout's goals, or any (x, y) in maze units)."""
        goal_xy = self.goals[goal] if isinstance(goal, int) else jnp.asarray(goal, jnp.float32)

        def reward_fn(obs, action, next_obs):
            del obs, action
            return (jnp.linalg.norm(self.positions(next_obs) - goal_xy, axis=-1) <= radius).astype(jnp.float32)

        return reward_fn


def goal_reward(env: PointMaze, goal, radius: float = 0.5):
    """:meth:`PointMaze.goal_reward` as a function."""
    return env.goal_reward(goal, radius)


# ---------------------------------------------------------------------------------------------
# Exact coverage of visited positions (host-side numpy: analysis, not training)
# ---------------------------------------------------------------------------------------------
def visitation_counts(env: PointMaze, obs, resolution: int = 1) -> np.ndarray:
    """Histogram of observations over (height * resolution, width * resolution) sub-cells;
    wall sub-cells are always 0."""
    pos = np.asarray(env.positions(np.asarray(obs, np.float32).reshape(-1, 2)))
    cols = np.clip(np.floor(pos[:, 0] * resolution).astype(int), 0, env.width * resolution - 1)
    rows = np.clip(np.floor(pos[:, 1] * resolution).astype(int), 0, env.height * resolution - 1)
    counts = np.zeros((env.height * resolution, env.width * resolution), np.int64)
    np.add.at(counts, (rows, cols), 1)
    free = _free_mask(env, resolution)
    return np.where(free, counts, 0)


def _free_mask(env: PointMaze, resolution: int) -> np.ndarray:
    return ~np.kron(env.walls_np, np.ones((resolution, resolution), bool))


def coverage(env: PointMaze, obs, resolution: int = 1) -> float:
    """Fraction of floor sub-cells holding at least one of ``obs``."""
    counts = visitation_counts(env, obs, resolution)
    return float(np.count_nonzero(counts) / np.count_nonzero(_free_mask(env, resolution)))


def visitation_entropy(env: PointMaze, obs, resolution: int = 1, normalized: bool = True) -> float:
    """Entropy -sum p log p of the visit distribution over floor sub-cells (nats); divided by
    log(#floor sub-cells) when ``normalized`` (1 = uniform over the whole maze)."""
    counts = visitation_counts(env, obs, resolution).reshape(-1).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    h = float(-(p * np.log(p)).sum())
    return h / float(np.log(np.count_nonzero(_free_mask(env, resolution)))) if normalized else h


def draw_frame(env: PointMaze, position=None, goal_index: int | None = None, pixels_per_cell: int = 16) -> np.ndarray:
    """An RGB image (uint8, H x W x 3) of the maze: walls dark, floor light, goals green
    (the selected one brighter), the point red."""
    ppc = pixels_per_cell
    img = np.where(env.walls_np[..., None], np.array([40, 40, 40]), np.array([235, 235, 235])).astype(np.uint8)
    img = np.kron(img, np.ones((ppc, ppc, 1), np.uint8))
    yy, xx = np.mgrid[0 : env.height * ppc, 0 : env.width * ppc]
    centers = (xx + 0.5) / ppc, (yy + 0.5) / ppc

    def disc(xy, radius, color):
        mask = (centers[0] - xy[0]) ** 2 + (centers[1] - xy[1]) ** 2 <= radius**2
        img[mask] = color

    for i, g in enumerate(np.asarray(env.goals)):
        disc(g, 0.3, (40, 200, 60) if goal_index is None or i == goal_index else (150, 210, 160))
    if position is not None:
        disc(np.asarray(position), 0.2, (220, 40, 40))
    return img


def make_point_maze(layout: str | tuple[str, ...] = "four_rooms", **param_overrides: Any):
    """(env, params); keyword arguments other than ``layout`` override :class:`PointMazeParams`."""
    env = PointMaze(layout)
    params = env.default_params
    allowed = ("max_steps_in_episode", "goal_index", "max_speed", "goal_radius", "start_noise")
    unknown = sorted(set(param_overrides) - set(allowed))
    if unknown:
        raise ValueError(f"rlx/PointMaze-v0 has no parameter {unknown[0]!r}; valid: layout, {', '.join(allowed)}")
    params = params.replace(**param_overrides)
    if not 0 <= int(params.goal_index) < env.num_goals:
        raise ValueError(f"goal_index={params.goal_index} is out of range; this layout has goals 0..{env.num_goals - 1}")
    if not 0.0 < float(params.max_speed) < 1.0:
        raise ValueError(f"max_speed={params.max_speed} must be in (0, 1) cells per step (no tunnelling through walls)")
    if int(params.max_steps_in_episode) < 1:
        raise ValueError(f"max_steps_in_episode={params.max_steps_in_episode} must be >= 1")
    return env, params
