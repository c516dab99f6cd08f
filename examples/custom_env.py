"""Bring your own environment: a small continuous-control task written in JAX, registered with
rlx, trained with SAC, and filmed.

    python examples/custom_env.py                     # train SAC on it (about a minute on a CPU)
    python examples/custom_env.py --video pm.gif      # ... and film the learned policy

The same env from the command line, by importing this file first:

    rlx train sac --env-module examples/custom_env.py --env mysuite/PointMass-v0 \\
        --total-steps 10000 --hidden-sizes 64,64 --out runs/pm
    rlx eval runs/pm --video pm.gif

The task: a point mass on the square [-1, 1]^2 must reach a target drawn at reset. The action is
a force in [-1, 1]^2; the reward is minus the distance to the target at every step; the
episode terminates when the point is within ``goal_radius`` of the target (so no further cost
accrues: a true end, no bootstrap) and is truncated after ``max_steps_in_episode`` steps (a time
limit: SAC bootstraps through it).

Writing one takes the gymnax 1.0 interface (see ``rlx.envs.contract``): subclass
``gymnax.environments.environment.Environment``, write ``reset_env`` and ``step_env`` (gymnax's
``step`` adds the auto-reset and ``info["final_observation"]``), the two spaces and the default
params with a ``max_steps_in_episode`` field. ``render_frame`` is optional, for videos.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment
from gymnax.environments.spaces import Box

import rlx.envs


@struct.dataclass
class PointMassState(environment.EnvState):
    position: jax.Array  # (2,)
    velocity: jax.Array  # (2,)
    target: jax.Array  # (2,)


@struct.dataclass
class PointMassParams(environment.EnvParams):
    max_steps_in_episode: int = 100
    dt: float = 0.1
    damping: float = 0.1  # fraction of the velocity lost per step
    force: float = 2.0  # acceleration of a full action
    goal_radius: float = 0.1


class PointMass(environment.Environment[PointMassState, PointMassParams]):
    """Reach a random target with a damped point mass (obs: position, velocity, target - position)."""

    @property
    def name(self) -> str:
        return "PointMass-v0"

    @property
    def default_params(self) -> PointMassParams:
        return PointMassParams()

    def action_space(self, params=None) -> Box:
        return Box(-1.0, 1.0, (2,), jnp.float32)

    def observation_space(self, params=None) -> Box:
        return Box(-jnp.inf, jnp.inf, (6,), jnp.float32)

    def reset_env(self, key, params: PointMassParams):
        k_pos, k_target = jax.random.split(key)
        state = PointMassState(
            position=jax.random.uniform(k_pos, (2,), minval=-0.9, maxval=0.9),
            velocity=jnp.zeros(2),
            target=jax.random.uniform(k_target, (2,), minval=-0.9, maxval=0.9),
            time=0,
        )
        return self.get_obs(state), state

    def step_env(self, key, state: PointMassState, action, params: PointMassParams):
        del key  # deterministic dynamics
        action = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)
        velocity = (1.0 - params.damping) * state.velocity + params.dt * params.force * action
        position = state.position + params.dt * velocity
        inside = jnp.abs(position) <= 1.0
        position = jnp.clip(position, -1.0, 1.0)
        velocity = jnp.where(inside, velocity, 0.0)  # a wall stops the point
        distance = jnp.linalg.norm(position - state.target)
        state = state.replace(position=position, velocity=velocity, time=state.time + 1)
        terminated = distance < params.goal_radius
        return self.get_obs(state), state, -distance, terminated, {"distance": distance}

    def get_obs(self, state: PointMassState, params=None, key=None):
        return jnp.concatenate([state.position, state.velocity, state.target - state.position]).astype(jnp.float32)

    def render_frame(self, state: PointMassState, params=None) -> np.ndarray:
        """An RGB image of the square: the target green, the point blue."""
        size = 96
        img = np.full((size, size, 3), 245, np.uint8)
        img[[0, -1], :] = img[:, [0, -1]] = 120  # the walls
        yy, xx = np.mgrid[0:size, 0:size]

        def disc(xy, radius, color):
            u, v = (np.asarray(xy[0]) + 1) / 2 * (size - 1), (1 - np.asarray(xy[1])) / 2 * (size - 1)
            img[(xx - u) ** 2 + (yy - v) ** 2 <= radius**2] = color

        disc(state.target, 5, (60, 180, 75))
        disc(state.position, 4, (40, 90, 220))
        return img


def make_point_mass(**param_overrides):
    """(env, params) for ``rlx.envs.make("mysuite/PointMass-v0", **param_overrides)``."""
    env = PointMass()
    params = env.default_params
    unknown = sorted(set(param_overrides) - set(params.__dataclass_fields__) - {"time"})
    if unknown:
        raise ValueError(f"mysuite/PointMass-v0 has no parameter {unknown[0]!r}")
    return env, params.replace(**param_overrides)


# Importing this file registers the env (what `rlx ... --env-module examples/custom_env.py` does).
rlx.envs.register("mysuite/PointMass-v0", make_point_mass)


def main(argv: list[str] | None = None) -> float:
    from rlx.agents import sac
    from rlx.run import run

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total-steps", type=int, default=10_000)
    parser.add_argument("--hidden-sizes", default="64,64")
    parser.add_argument("--eval-every", type=int, default=1_000)
    parser.add_argument("--learning-starts", type=int, default=1_000)
    parser.add_argument("--num-seeds", type=int, default=1)
    parser.add_argument("--out", default=None, help="run folder (config, metrics, learning curve, checkpoints)")
    parser.add_argument("--video", default=None, help="film the learned policy (.gif, .mp4 or .html)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.video and not args.out:
        parser.error("--video films a saved run: give --out too")

    env, env_params = rlx.envs.make("mysuite/PointMass-v0")
    rlx.envs.check_env_contract(env, env_params)  # make_train checks it too; here to show it
    config = sac.SACConfig(
        total_steps=args.total_steps, eval_every=args.eval_every, learning_starts=args.learning_starts,
        hidden_sizes=tuple(int(w) for w in args.hidden_sizes.split(",")), eval_episodes=10,
    )
    result = run(
        sac, config, "mysuite/PointMass-v0", num_seeds=args.num_seeds, out_dir=args.out,
        progress=not args.no_progress, extra_info={"env_modules": [os.path.abspath(__file__)]},
    )
    final = float(np.mean(result.final_return))
    print(f"SAC on mysuite/PointMass-v0: final evaluation return {final:.1f} after "
          f"{result.schedule.total_env_steps:,} env steps (standing still scores about -94)")
    if args.video:
        from rlx.run.video import record_run

        print(record_run(args.out, args.video, progress=not args.no_progress).describe())
    return final


if __name__ == "__main__":
    main()
