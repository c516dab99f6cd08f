"""Peer libraries on the SAC/Pendulum benchmark task: rejax, sbx, stable-baselines3.

None of them is an rlx dependency. ``sac_pendulum.py`` runs whichever is importable in its own
interpreter, or, with ``--peer-python LIB=PYTHON``, runs this file under another interpreter
(rejax 0.1.3 needs gymnax 0.0.9, which cannot share a venv with rlx):

    PYTHON benchmarks/sac_pendulum_peers.py sbx --settings '{"total_steps": 20000, ...}' --seeds 2

and reads the JSON it prints on its last line. This file imports nothing from rlx.

Each run uses the benchmark's settings (env steps, learning_starts, batch size, hidden sizes,
evaluation period and episodes) and the library's defaults otherwise. Per seed it returns the
evaluation points (env steps, mean return, wall seconds since training started, evaluation
included), the evaluation seconds, the training seconds and the number of gradient updates.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import time

PEERS = ("rejax", "sbx", "stable_baselines3")
DIST_NAMES = {"rejax": "rejax", "sbx": "sbx-rl", "stable_baselines3": "stable-baselines3"}


def available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def version(name: str) -> str:
    try:
        return importlib.metadata.version(DIST_NAMES[name])
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def run_sb3_family(name: str, s: dict, seed: int) -> dict:
    """stable-baselines3 or sbx (same API): host loop, evaluation from a callback."""
    import gymnasium as gym
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    if name == "sbx":
        from sbx import SAC
    else:
        from stable_baselines3 import SAC

    class TimedEvaluation(BaseCallback):
        def __init__(self):
            super().__init__()
            self.eval_env = gym.make("Pendulum-v1")
            self.rows: list[tuple[int, float, float]] = []
            self.eval_seconds = 0.0
            self.t0 = time.perf_counter()

        def _on_training_start(self) -> None:
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            if self.num_timesteps % s["eval_every"] == 0:
                t = time.perf_counter()
                mean, _ = evaluate_policy(
                    self.model, self.eval_env, n_eval_episodes=s["eval_episodes"], deterministic=True
                )
                self.eval_seconds += time.perf_counter() - t
                self.rows.append((int(self.num_timesteps), float(mean), time.perf_counter() - self.t0))
            return True

    model = SAC(
        "MlpPolicy",
        "Pendulum-v1",
        learning_starts=s["learning_starts"],
        batch_size=s["batch_size"],
        policy_kwargs={"net_arch": list(s["hidden_sizes"])},
        seed=seed,
        verbose=0,
    )
    callback = TimedEvaluation()
    t = time.perf_counter()
    model.learn(total_timesteps=s["total_steps"], callback=callback)
    seconds = time.perf_counter() - t
    updates = getattr(model, "_n_updates", None)
    if updates is None:
        updates = max(0, s["total_steps"] - s["learning_starts"])
    return {
        "steps": [r[0] for r in callback.rows],
        "returns": [r[1] for r in callback.rows],
        "wall": [r[2] for r in callback.rows],
        "eval_seconds": callback.eval_seconds,
        "run_seconds": seconds,
        "updates": int(updates),
        "wall_estimated": False,
    }


def run_rejax(s: dict, seeds: list[int]) -> tuple[float, list[dict]]:
    """rejax: one jitted program per seed; per-evaluation wall is estimated as linear in steps."""
    import jax
    import numpy as np
    from rejax import SAC
    from rejax.evaluate import evaluate

    algo = SAC.create(
        env="Pendulum-v1",
        total_timesteps=s["total_steps"],
        eval_freq=s["eval_every"],
        num_envs=1,
        fill_buffer=s["learning_starts"],
        batch_size=s["batch_size"],
        hidden_layer_sizes=tuple(s["hidden_sizes"]),
    )

    def eval_callback(a, ts, key):  # the benchmark's episode count, rejax's own acting function
        limit = a.env_params.max_steps_in_episode
        return evaluate(a.make_act(ts), key, a.env, a.env_params, s["eval_episodes"], limit)

    algo = algo.replace(eval_callback=eval_callback)
    t = time.perf_counter()
    train = jax.jit(algo.train).lower(jax.random.PRNGKey(0)).compile()
    compile_seconds = time.perf_counter() - t
    runs = []
    for seed in seeds:
        t = time.perf_counter()
        _, (_, returns) = jax.block_until_ready(train(jax.random.PRNGKey(seed)))
        seconds = time.perf_counter() - t
        means = np.asarray(returns).mean(axis=-1)  # (1 + evaluations,): the first is before training
        steps = [i * s["eval_every"] for i in range(len(means))]
        runs.append({
            "steps": steps,
            "returns": [float(x) for x in means],
            "wall": [seconds * st / s["total_steps"] for st in steps],
            "eval_seconds": 0.0,
            "run_seconds": seconds,
            "updates": max(0, s["total_steps"] - s["learning_starts"]),
            "wall_estimated": True,
        })
    return compile_seconds, runs


def run_peer(name: str, s: dict, num_seeds: int) -> dict:
    """Run ``name`` for seeds 0..num_seeds-1; errors are reported, not raised."""
    out = {"library": name, "version": version(name), "compile_seconds": None, "seeds": []}
    try:
        if name == "rejax":
            out["compile_seconds"], out["seeds"] = run_rejax(s, list(range(num_seeds)))
        else:
            out["seeds"] = [run_sb3_family(name, s, seed) for seed in range(num_seeds)]
    except Exception as e:  # a peer's API or install problem must not end the benchmark
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library", choices=PEERS)
    parser.add_argument("--settings", required=True, help="JSON: the benchmark settings")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(run_peer(args.library, json.loads(args.settings), args.seeds)))


if __name__ == "__main__":
    main()
