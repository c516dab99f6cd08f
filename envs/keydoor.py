"""KeyDoor: a gridworld with keys, locked doors and a goal (``rlx/KeyDoor-v0``).

The grid is a row of ``num_doors + 1`` rooms, each ``room_width`` cells wide and ``height`` cells
high, separated by one-cell walls. Wall ``k`` has one locked door; its key lies in room ``k``. The
agent starts in room 0 and the goal is in the last room. Everything (agent cell, key cells, door
rows, goal cell) is drawn from the reset key, so one key is one task instance.

Actions (Discrete(6)): 0 up, 1 down, 2 left, 3 right, 4 pick up the key on the agent's cell,
5 open an adjacent locked door whose key the agent holds. An action that cannot be carried out
(walking into a wall or a locked door, picking up where there is no key, opening with nothing to
open) changes nothing and sets ``info["invalid_action"]`` (the analogue of an LLM agent's
unparseable output); ``invalid_penalty`` (default 0) is then subtracted from the reward.

Reward 1 when the agent reaches the goal (terminated), else 0, so a return is a success flag.
The episode is truncated after ``max_steps_in_episode`` steps. The observation is the full
symbolic state, flattened: per cell [wall, locked door, key on the floor, goal, agent], then the
keys held. It is a function of the state alone (no time), so states recur across rollouts: what
GiGPO's anchor-state grouping relies on.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment
from gymnax.environments.spaces import Box, Discrete

__all__ = ["KeyDoor", "KeyDoorParams", "KeyDoorState", "make_keydoor"]

_MOVES = jnp.array([[-1, 0], [1, 0], [0, -1], [0, 1]], jnp.int32)  # up, down, left, right
NUM_CHANNELS = 5


@struct.dataclass
class KeyDoorState(environment.EnvState):
    agent: jax.Array  # (2,) int32 row, column
    key_cells: jax.Array  # (num_doors, 2) int32
    key_held: jax.Array  # (num_doors,) bool
    door_rows: jax.Array  # (num_doors,) int32
    door_open: jax.Array  # (num_doors,) bool
    goal: jax.Array  # (2,) int32


@struct.dataclass
class KeyDoorParams(environment.EnvParams):
    max_steps_in_episode: int = 50
    invalid_penalty: float = 0.0


class KeyDoor(environment.Environment[KeyDoorState, KeyDoorParams]):
    def __init__(self, height: int = 4, room_width: int = 3, num_doors: int = 1):
        super().__init__()
        if height < 1 or room_width < 1 or num_doors < 0 or height * room_width < 2:
            raise ValueError(
                f"KeyDoor needs height >= 1, room_width >= 1, num_doors >= 0 and at least 2 cells "
                f"per room; got height={height}, room_width={room_width}, num_doors={num_doors}"
            )
        self.height = int(height)
        self.room_width = int(room_width)
        self.num_doors = int(num_doors)
        self.width = (self.num_doors + 1) * self.room_width + self.num_doors
        self.wall_columns = jnp.array(
            [self.room_width + k * (self.room_width + 1) for k in range(self.num_doors)], jnp.int32
        )

    @property
    def default_params(self) -> KeyDoorParams:
        return KeyDoorParams()

    @property
    def name(self) -> str:
        return "KeyDoor-v0"

    @property
    def num_actions(self) -> int:
        return 6

    def action_space(self, params=None) -> Discrete:
        return Discrete(6)

    def observation_space(self, params=None) -> Box:
        size = self.height * self.width * NUM_CHANNELS + self.num_doors
        return Box(0.0, 1.0, (size,), jnp.float32)

    # ---- generation ----------------------------------------------------------------------
    def _room_cell(self, room: int, index) -> jax.Array:
        row, col = index // self.room_width, index % self.room_width
        return jnp.stack([row, room * (self.room_width + 1) + col]).astype(jnp.int32)

    def reset_env(self, key: jax.Array, params: KeyDoorParams):
        rooms = self.num_doors + 1
        k_rooms, k_doors = jax.random.split(key)
        cells = self.height * self.room_width
        # Two distinct cells per room: [0] is the agent (room 0) or the goal (last room), [1] the
        # key of that room (or the goal when there is a single room).
        picks = jax.vmap(lambda k: jax.random.permutation(k, cells)[:2])(jax.random.split(k_rooms, rooms))
        agent = self._room_cell(0, picks[0, 0])
        if self.num_doors == 0:
            goal = self._room_cell(0, picks[0, 1])
            key_cells = jnp.zeros((0, 2), jnp.int32)
        else:
            goal = self._room_cell(self.num_doors, picks[self.num_doors, 0])
            key_cells = jnp.stack([self._room_cell(k, picks[k, 1]) for k in range(self.num_doors)])
        state = KeyDoorState(
            agent=agent,
            key_cells=key_cells,
            key_held=jnp.zeros(self.num_doors, bool),
            door_rows=jax.random.randint(k_doors, (self.num_doors,), 0, self.height),
            door_open=jnp.zeros(self.num_doors, bool),
            goal=goal,
            time=0,
        )
        return self.get_obs(state), state

    # ---- dynamics ------------------------------------------------------------------------
    def _passable(self, state: KeyDoorState, cell: jax.Array) -> jax.Array:
        inside = (cell[0] >= 0) & (cell[0] < self.height) & (cell[1] >= 0) & (cell[1] < self.width)
        is_wall = jnp.any(cell[1] == self.wall_columns)
        through_open_door = jnp.any((cell[1] == self.wall_columns) & (cell[0] == state.door_rows) & state.door_open)
        return inside & (~is_wall | through_open_door)

    def _adjacent_doors(self, state: KeyDoorState) -> jax.Array:
        """(num_doors,) bool: door k is a 4-neighbour of the agent."""
        dr = jnp.abs(state.door_rows - state.agent[0])
        dc = jnp.abs(self.wall_columns - state.agent[1])
        return dr + dc == 1

    def step_env(self, key: jax.Array, state: KeyDoorState, action, params: KeyDoorParams):
        del key
        action = jnp.asarray(action, jnp.int32)
        target = state.agent + _MOVES[jnp.clip(action, 0, 3)]
        can_move = (action < 4) & self._passable(state, target)

        on_key = jnp.all(state.key_cells == state.agent, axis=-1) & ~state.key_held
        can_pick = (action == 4) & jnp.any(on_key)

        openable = self._adjacent_doors(state) & ~state.door_open & state.key_held
        can_open = (action == 5) & jnp.any(openable)

        valid = can_move | can_pick | can_open
        agent = jnp.where(can_move, target, state.agent)
        key_held = state.key_held | (can_pick & on_key)
        door_open = state.door_open | (can_open & openable)
        success = jnp.all(agent == state.goal)
        reward = success.astype(jnp.float32) - params.invalid_penalty * (~valid).astype(jnp.float32)
        state = state.replace(agent=agent, key_held=key_held, door_open=door_open, time=state.time + 1)
        info = {"invalid_action": ~valid, "success": success}
        return self.get_obs(state), state, reward, success, info

    def is_terminated(self, state: KeyDoorState, params: KeyDoorParams) -> jax.Array:
        return jnp.all(state.agent == state.goal)

    # ---- observation ---------------------------------------------------------------------
    def _layers(self, state: KeyDoorState) -> jax.Array:
        rows = jnp.arange(self.height)[:, None]
        cols = jnp.arange(self.width)[None, :]
        on_wall_col = jnp.zeros((self.height, self.width), bool)
        locked = jnp.zeros((self.height, self.width), bool)
        keys = jnp.zeros((self.height, self.width), bool)
        for k in range(self.num_doors):
            column = cols == self.wall_columns[k]
            door_cell = column & (rows == state.door_rows[k])
            on_wall_col = on_wall_col | (column & ~door_cell)
            locked = locked | (door_cell & ~state.door_open[k])
            keys = keys | ((rows == state.key_cells[k, 0]) & (cols == state.key_cells[k, 1]) & ~state.key_held[k])
        goal = (rows == state.goal[0]) & (cols == state.goal[1])
        agent = (rows == state.agent[0]) & (cols == state.agent[1])
        return jnp.stack([on_wall_col, locked, keys, goal, agent], axis=-1)

    def get_obs(self, state: KeyDoorState, params=None, key=None) -> jax.Array:
        layers = self._layers(state).reshape(-1)
        return jnp.concatenate([layers, state.key_held]).astype(jnp.float32)

    def render_text(self, state: KeyDoorState) -> str:
        """The grid as text: # wall, D locked door, k key, G goal, A agent, . floor."""
        layers = jax.device_get(self._layers(state))
        lines = []
        for r in range(self.height):
            row = ""
            for c in range(self.width):
                wall, locked, key, goal, agent = layers[r, c]
                row += "A" if agent else "D" if locked else "#" if wall else "k" if key else "G" if goal else "."
            lines.append(row)
        held = jax.device_get(state.key_held)
        lines.append(f"keys held: {[int(k) for k in range(self.num_doors) if held[k]]}")
        return "\n".join(lines)


ACTION_NAMES = ("up", "down", "left", "right", "pick up", "open")


def make_keydoor(height: int = 4, room_width: int = 3, num_doors: int = 1, **param_overrides: Any):
    """(env, params); keyword arguments other than the layout override ``KeyDoorParams``."""
    env = KeyDoor(height=height, room_width=room_width, num_doors=num_doors)
    params = env.default_params
    unknown = sorted(set(param_overrides) - {"max_steps_in_episode", "invalid_penalty"})
    if unknown:
        raise ValueError(
            f"rlx/KeyDoor-v0 has no parameter {unknown[0]!r}; valid: height, room_width, num_doors, "
            "max_steps_in_episode, invalid_penalty"
        )
    return env, params.replace(**param_overrides)
