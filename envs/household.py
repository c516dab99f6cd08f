"""Household: a symbolic, ALFWorld-like task (``rlx/Household-v0``).

A house of ``num_rooms`` rooms with ``receptacles_per_room`` receptacles each (cabinets, drawers,
a fridge, a countertop, ... and one sink basin somewhere), and ``num_objects`` objects lying in
receptacles. Some receptacles are closed and must be opened before anything inside can be seen,
taken or put in. Objects may be dirty. The task: "put X in Y" or "put a clean X in Y" (clean it
at the sink first). Everything is a small integer tensor drawn from the reset key: which
receptacles are closed, where the sink is, where each object lies, which are dirty, and the goal.

Actions (Discrete(num_rooms + R + O + 3), R receptacles, O objects):
``go to room k`` | ``go to receptacle r`` (in the current room) | ``take object o`` (from the open
receptacle the agent stands at, hands empty) | ``put`` (the held object into the open receptacle
the agent stands at) | ``open`` (the closed receptacle the agent stands at) | ``clean`` (the held
object, at the sink). An action whose precondition fails is a no-op flagged in
``info["invalid_action"]`` (like an LLM agent's unparseable or impossible command);
``invalid_penalty`` (default 0) is subtracted from the reward then.

Reward 1 only on success (terminated): the goal object lies in the goal receptacle, clean if the
task says so. Truncated after ``max_steps_in_episode`` steps.

The observation is the symbolic state *as the agent knows it*: its room and position, what it
holds, every receptacle's kind (open / closed, openable, sink, visited), the objects it has seen
and where (an object is seen when the agent stands at its open receptacle or holds it) with
their dirtiness, and the goal. Object positions it has not seen are hidden, so it has to search.
With ``show_admissible`` (default) it ends with the admissible-action mask, as ALFWorld lists the
admissible commands in its text observation; it reveals nothing unseen. The observation is a
function of the state only, so states recur across rollouts of one task.

The default layout is ALFWorld's shape at a small scale: one room, 4 receptacles, 3 objects,
30 steps. Uniform random actions succeed in about 2 % of its episodes; in the former default
(2 rooms x 3 receptacles, 3 objects, 40 steps) in about 0.3 %, too rarely for a policy learnt
from scratch by group-relative returns within a million steps (a pretrained LLM brings the prior
that makes ALFWorld's successes frequent). The harder layouts stay one keyword away.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment
from gymnax.environments.spaces import Box, Discrete

__all__ = ["Household", "HouseholdParams", "HouseholdState", "make_household"]

RECEPTACLE_NAMES = ("countertop", "cabinet", "drawer", "fridge", "shelf", "table", "desk", "dresser")
OBJECT_NAMES = ("apple", "mug", "plate", "knife", "bowl", "cup", "spoon", "sponge", "egg", "pan")


@struct.dataclass
class HouseholdState(environment.EnvState):
    room: jax.Array  # int32, the agent's room
    at: jax.Array  # int32, receptacle the agent stands at, R = none (middle of the room)
    holding: jax.Array  # int32, object held, O = nothing
    is_open: jax.Array  # (R,) bool
    openable: jax.Array  # (R,) bool
    sink: jax.Array  # int32, the sink basin's receptacle
    visited: jax.Array  # (R,) bool
    location: jax.Array  # (O,) int32, receptacle of each object, R = held
    dirty: jax.Array  # (O,) bool
    seen: jax.Array  # (O,) bool, the agent knows where the object is
    goal_object: jax.Array  # int32
    goal_receptacle: jax.Array  # int32
    goal_clean: jax.Array  # bool


@struct.dataclass
class HouseholdParams(environment.EnvParams):
    max_steps_in_episode: int = 30
    invalid_penalty: float = 0.0
    closed_probability: float = 0.5  # chance that a (non-sink) receptacle starts closed
    clean_task_probability: float = 0.5


class Household(environment.Environment[HouseholdState, HouseholdParams]):
    def __init__(
        self, num_rooms: int = 1, receptacles_per_room: int = 4, num_objects: int = 3, show_admissible: bool = True
    ):
        super().__init__()
        if num_rooms < 1 or receptacles_per_room < 1 or num_objects < 1 or num_rooms * receptacles_per_room < 2:
            raise ValueError(
                "Household needs num_rooms >= 1, receptacles_per_room >= 1, num_objects >= 1 and at "
                f"least 2 receptacles; got {num_rooms}, {receptacles_per_room}, {num_objects}"
            )
        self.num_rooms = int(num_rooms)
        self.receptacles_per_room = int(receptacles_per_room)
        self.num_receptacles = self.num_rooms * self.receptacles_per_room
        self.num_objects = int(num_objects)
        self.show_admissible = bool(show_admissible)
        self.receptacle_room = jnp.arange(self.num_receptacles) // self.receptacles_per_room

    # ---- action layout -------------------------------------------------------------------
    @property
    def first_goto_receptacle(self) -> int:
        return self.num_rooms

    @property
    def first_take(self) -> int:
        return self.num_rooms + self.num_receptacles

    @property
    def put_action(self) -> int:
        return self.first_take + self.num_objects

    @property
    def open_action(self) -> int:
        return self.put_action + 1

    @property
    def clean_action(self) -> int:
        return self.put_action + 2

    @property
    def num_actions(self) -> int:
        return self.put_action + 3

    @property
    def default_params(self) -> HouseholdParams:
        return HouseholdParams()

    @property
    def name(self) -> str:
        return "Household-v0"

    def action_space(self, params=None) -> Discrete:
        return Discrete(self.num_actions)

    def observation_space(self, params=None) -> Box:
        return Box(0.0, 1.0, (self._obs_size(),), jnp.float32)

    def _obs_size(self) -> int:
        nr, r, o = self.num_rooms, self.num_receptacles, self.num_objects
        size = nr + (r + 1) + (o + 1) + 4 * r + o * (r + 2) + o + o + r + 1
        return size + (self.num_actions if self.show_admissible else 0)

    # ---- generation ----------------------------------------------------------------------
    def reset_env(self, key: jax.Array, params: HouseholdParams):
        r, o = self.num_receptacles, self.num_objects
        keys = jax.random.split(key, 7)
        sink = jax.random.randint(keys[0], (), 0, r)
        openable = jax.random.bernoulli(keys[1], params.closed_probability, (r,)) & (jnp.arange(r) != sink)
        location = jax.random.randint(keys[2], (o,), 0, r)
        dirty = jax.random.bernoulli(keys[3], 0.5, (o,))
        goal_object = jax.random.randint(keys[4], (), 0, o)
        # The goal receptacle differs from where the goal object lies (and is not the sink).
        allowed = (jnp.arange(r) != location[goal_object]) & (jnp.arange(r) != sink)
        allowed = jnp.where(jnp.any(allowed), allowed, jnp.arange(r) != location[goal_object])
        goal_receptacle = jax.random.choice(keys[5], r, p=allowed / jnp.sum(allowed))
        goal_clean = jax.random.bernoulli(keys[6], params.clean_task_probability)
        dirty = dirty.at[goal_object].set(dirty[goal_object] | goal_clean)  # cleaning is needed
        state = HouseholdState(
            time=0,
            room=jnp.int32(0),
            at=jnp.int32(r),
            holding=jnp.int32(o),
            is_open=~openable,
            openable=openable,
            sink=sink.astype(jnp.int32),
            visited=jnp.zeros(r, bool),
            location=location.astype(jnp.int32),
            dirty=dirty,
            seen=jnp.zeros(o, bool),
            goal_object=goal_object.astype(jnp.int32),
            goal_receptacle=goal_receptacle.astype(jnp.int32),
            goal_clean=goal_clean,
        )
        return self.get_obs(state), state

    # ---- dynamics ------------------------------------------------------------------------
    def admissible(self, state: HouseholdState) -> jax.Array:
        """(num_actions,) bool: the actions whose precondition holds in ``state`` (ALFWorld's
        "admissible commands"). It reveals nothing unseen: taking needs an open receptacle, where
        the objects are visible."""
        r, o = self.num_receptacles, self.num_objects
        at_receptacle = state.at < r
        at = jnp.clip(state.at, 0, r - 1)
        here_open = at_receptacle & state.is_open[at]
        hands_free = state.holding == o
        go_room = jnp.arange(self.num_rooms) != state.room
        go_receptacle = (self.receptacle_room == state.room) & (jnp.arange(r) != state.at)
        take = hands_free & here_open & (state.location == state.at)
        put = ~hands_free & here_open
        open_ = at_receptacle & state.openable[at] & ~state.is_open[at]
        clean = ~hands_free & (state.at == state.sink)
        return jnp.concatenate([go_room, go_receptacle, take, jnp.stack([put, open_, clean])])

    def step_env(self, key: jax.Array, state: HouseholdState, action, params: HouseholdParams):
        del key
        r, o = self.num_receptacles, self.num_objects
        a = jnp.asarray(action, jnp.int32)
        in_range = (a >= 0) & (a < self.num_actions)
        valid = in_range & self.admissible(state)[jnp.clip(a, 0, self.num_actions - 1)]
        go_room_ok = valid & (a < self.first_goto_receptacle)
        go_rec_ok = valid & (a >= self.first_goto_receptacle) & (a < self.first_take)
        target = jnp.clip(a - self.first_goto_receptacle, 0, r - 1)
        take_ok = valid & (a >= self.first_take) & (a < self.put_action)
        obj = jnp.clip(a - self.first_take, 0, o - 1)
        put_ok = valid & (a == self.put_action)
        open_ok = valid & (a == self.open_action)
        clean_ok = valid & (a == self.clean_action)
        at = jnp.clip(state.at, 0, r - 1)

        held = jnp.clip(state.holding, 0, o - 1)
        room = jnp.where(go_room_ok, a, state.room)
        new_at = jnp.where(go_room_ok, r, jnp.where(go_rec_ok, target, state.at))
        location = jnp.where(take_ok, state.location.at[obj].set(r), state.location)
        location = jnp.where(put_ok, location.at[held].set(state.at), location)
        holding = jnp.where(take_ok, obj, jnp.where(put_ok, o, state.holding))
        is_open = jnp.where(open_ok, state.is_open.at[at].set(True), state.is_open)
        dirty = jnp.where(clean_ok, state.dirty.at[held].set(False), state.dirty)
        visited = jnp.where(go_rec_ok, state.visited.at[target].set(True), state.visited)

        new_at_c = jnp.clip(new_at, 0, r - 1)
        visible = (new_at < r) & is_open[new_at_c] & (location == new_at)
        seen = state.seen | visible | (location == r)
        state = state.replace(
            room=room.astype(jnp.int32), at=new_at.astype(jnp.int32), holding=holding.astype(jnp.int32),
            is_open=is_open, visited=visited, location=location, dirty=dirty, seen=seen,
            time=state.time + 1,
        )
        success = self.is_terminated(state, params)
        reward = success.astype(jnp.float32) - params.invalid_penalty * (~valid).astype(jnp.float32)
        info = {"invalid_action": ~valid, "success": success}
        return self.get_obs(state), state, reward, success, info

    def is_terminated(self, state: HouseholdState, params: HouseholdParams) -> jax.Array:
        g = state.goal_object
        placed = state.location[g] == state.goal_receptacle
        return placed & ~(state.goal_clean & state.dirty[g])

    # ---- observation ---------------------------------------------------------------------
    def get_obs(self, state: HouseholdState, params=None, key=None) -> jax.Array:
        r, o = self.num_receptacles, self.num_objects
        sink = jnp.arange(r) == state.sink
        known_location = jnp.where(state.seen, state.location, r + 1)  # r = held, r + 1 = unknown
        parts = [
            jax.nn.one_hot(state.room, self.num_rooms),
            jax.nn.one_hot(state.at, r + 1),
            jax.nn.one_hot(state.holding, o + 1),
            state.is_open, state.openable, sink, state.visited,
            jax.nn.one_hot(known_location, r + 2).reshape(-1),
            state.dirty & state.seen,
            jax.nn.one_hot(state.goal_object, o),
            jax.nn.one_hot(state.goal_receptacle, r),
            state.goal_clean[None],
        ]
        if self.show_admissible:
            parts.append(self.admissible(state))
        return jnp.concatenate([jnp.asarray(p, jnp.float32).reshape(-1) for p in parts])

    # ---- text ----------------------------------------------------------------------------
    def receptacle_name(self, state: HouseholdState, index: int) -> str:
        if int(index) == int(state.sink):
            return f"sinkbasin {index}"
        return f"{RECEPTACLE_NAMES[int(index) % len(RECEPTACLE_NAMES)]} {index}"

    def object_name(self, index: int) -> str:
        return f"{OBJECT_NAMES[int(index) % len(OBJECT_NAMES)]} {index}"

    def action_text(self, state: HouseholdState, action: int) -> str:
        a = int(action)
        if a < self.first_goto_receptacle:
            return f"go to room {a}"
        if a < self.first_take:
            return f"go to {self.receptacle_name(state, a - self.first_goto_receptacle)}"
        if a < self.put_action:
            return f"take {self.object_name(a - self.first_take)}"
        return ("put", "open", "clean")[a - self.put_action]

    def goal_text(self, state: HouseholdState) -> str:
        s = jax.device_get(state)
        clean = "a clean " if bool(s.goal_clean) else ""
        return f"put {clean}{self.object_name(s.goal_object)} in {self.receptacle_name(s, s.goal_receptacle)}"

    def render_text(self, state: HouseholdState) -> str:
        """What the agent knows, in words (like ALFWorld's text observation)."""
        s = jax.device_get(state)
        r, o = self.num_receptacles, self.num_objects
        place = f"in room {int(s.room)}"
        if int(s.at) < r:
            door = "open" if bool(s.is_open[s.at]) else "closed"
            place += f", at {self.receptacle_name(s, s.at)} ({door})"
        here = [self.object_name(i) for i in range(o) if bool(s.seen[i]) and int(s.location[i]) == int(s.at)]
        held = "nothing" if int(s.holding) == o else self.object_name(s.holding) + (
            " (dirty)" if bool(s.dirty[s.holding]) else " (clean)")
        lines = [f"You are {place}. You hold {held}."]
        if int(s.at) < r and bool(s.is_open[s.at]):
            lines.append("You see " + (", ".join(here) if here else "nothing") + ".")
        lines.append(f"Task: {self.goal_text(s)}.")
        return " ".join(lines)


def make_household(
    num_rooms: int = 1,
    receptacles_per_room: int = 4,
    num_objects: int = 3,
    show_admissible: bool = True,
    **param_overrides: Any,
):
    """(env, params); keyword arguments other than the layout (and ``show_admissible``) override
    ``HouseholdParams``."""
    env = Household(
        num_rooms=num_rooms, receptacles_per_room=receptacles_per_room, num_objects=num_objects,
        show_admissible=show_admissible,
    )
    params = env.default_params
    fields = {"max_steps_in_episode", "invalid_penalty", "closed_probability", "clean_task_probability"}
    unknown = sorted(set(param_overrides) - fields)
    if unknown:
        raise ValueError(
            f"rlx/Household-v0 has no parameter {unknown[0]!r}; valid: num_rooms, receptacles_per_room, "
            f"num_objects, show_admissible, {', '.join(sorted(fields))}"
        )
    return env, params.replace(**param_overrides)
