"""Reward-free exploration on small MDPs: planning error epsilon against exploration episodes K.

    python benchmarks/reward_free_tabular.py           # the full figure (minutes on a 2-core CPU)
    python benchmarks/reward_free_tabular.py --quick   # a smoke run with tiny settings; not a result

For random tabular MDPs (and random linear mixture MDPs), ``rlx.explore.linear_mixture.explore``
runs K reward-free episodes per instance, all instances vmapped in one program; the model after
K = 10, 20, 40, ... episodes is then given each of ``--rewards`` random reward functions (sparse,
every episode's return in [0, 1]), the planned policy is evaluated in the true MDP, and
epsilon = V*(s_1) - V^pi(s_1) is averaged over rewards and instances. The figure is log-log, with
a reference line of slope -1/2 (the paper's rate: K = O~(d^2 / eps^2), i.e. eps ~ d / sqrt(K)) and
the least-squares slope of log eps against log K for every configuration:

* ``practical``: the default config (variance-aware weights, constant beta = 0.5);
* ``theory``: the HF-UCRL-VTR+ constants and radius (the pseudo-reward saturates at small K, so
  exploration is uniform among ties there);
* ``uniform``: the same regression with uniformly random actions (a baseline).

Results: ``<out>/reward_free_tabular-<platform>.json`` / ``.md`` / ``.png`` (``-quick`` added
for a smoke run) with the machine, versions, date and settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax
import numpy as np

from rlx.envs.tabular import random_linear_mixture_mdp, random_reward, random_tabular_mdp
from rlx.explore import linear_mixture as lm
from rlx.run import logging as runlog


@dataclasses.dataclass(frozen=True)
class Settings:
    num_states: int = 5
    num_actions: int = 2
    horizon: int = 5
    concentration: float = 0.3
    reward_density: float = 0.3
    mixture_states: int = 10
    mixture_dim: int = 5
    mixture_concentration: float = 0.1
    instances: int = 8
    rewards: int = 20
    k_min: int = 10
    k_max: int = 1280
    seed: int = 0


QUICK = {"instances": 2, "rewards": 4, "k_max": 80}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def k_grid(s: Settings) -> list[int]:
    ks, k = [], s.k_min
    while k <= s.k_max:
        ks.append(k)
        k *= 2
    return ks


def measure(s: Settings, family: str, name: str, mdps, rewards, config: lm.RewardFreeConfig) -> dict:
    ks = k_grid(s)
    index = np.array([k // s.k_min - 1 for k in ks])  # theta after k episodes, recorded every k_min

    def run(mdps, keys):
        result = jax.vmap(lambda m, k: lm.explore(config, m, k))(mdps, keys)

        def per_instance(mdp, history):
            def per_reward(theta, r):
                planned = lm.plan(mdp.features, theta, r, mdp.horizon)
                table = lm.reward_table(r, mdp.num_states, mdp.num_actions, mdp.horizon)
                true_value = mdp.initial @ lm.policy_value(mdp.kernel, table, planned.policy, mdp.horizon)
                model_error = jax.numpy.abs(mdp.initial @ planned.value - true_value)
                return jax.numpy.stack([lm.planning_error(mdp, r, planned.policy), model_error])

            def per_theta(theta):
                return jax.vmap(lambda r: per_reward(theta, r))(rewards)

            return jax.vmap(per_theta)(history[index])

        return result.exploration_value, jax.vmap(per_instance)(mdps, result.theta_history)

    keys = jax.random.split(jax.random.PRNGKey(s.seed + 1), s.instances)
    t0 = time.perf_counter()
    compiled = jax.jit(run).lower(mdps, keys).compile()
    t1 = time.perf_counter()
    value, both = compiled(mdps, keys)
    both = np.asarray(both)  # (instances, len(ks), rewards, 2)
    errors, model_errors = both[..., 0], both[..., 1]
    t2 = time.perf_counter()
    mean = errors.mean(axis=(0, 2))
    worst = errors.max(axis=2).mean(axis=0)  # mean over instances of the worst reward
    fit = np.polyfit(np.log(ks), np.log(np.maximum(mean, 1e-12)), 1)[0]
    model_mean = model_errors.mean(axis=(0, 2))
    model_fit = np.polyfit(np.log(ks), np.log(np.maximum(model_mean, 1e-12)), 1)[0]
    value = np.asarray(value).mean(axis=0)
    row = {
        "family": family,
        "config": name,
        "fields": config.to_dict(),
        "k": ks,
        "eps_mean": mean.tolist(),
        "eps_worst_reward": worst.tolist(),
        "eps_std_over_instances": errors.mean(axis=2).std(axis=0).tolist(),
        "fitted_slope": float(fit),
        "value_error_mean": model_mean.tolist(),
        "value_error_fitted_slope": float(model_fit),
        "exploration_value": [float(value[k - 1]) for k in ks],
        "compile_s": t1 - t0,
        "run_s": t2 - t1,
    }
    log(f"{family}/{name}: slope {fit:+.2f} (value error {model_fit:+.2f}), eps {mean[0]:.4f} (K={ks[0]}) -> {mean[-1]:.5f} (K={ks[-1]}), "
        f"compile {t1 - t0:.1f}s, run {t2 - t1:.1f}s")
    return row


def parse_args(argv=None) -> tuple[Settings, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    p.add_argument("--instances", type=int, default=None, help="MDP instances per family (default 8)")
    p.add_argument("--k-max", type=int, default=None, help="largest exploration budget K (default 1280)")
    p.add_argument("--out", default="benchmarks/results/", help="folder for the .json, .md and .png results")
    args = p.parse_args(argv)
    s = Settings(**(QUICK if args.quick else {}))
    if args.instances is not None:
        s = dataclasses.replace(s, instances=args.instances)
    if args.k_max is not None:
        s = dataclasses.replace(s, k_max=args.k_max)
    return s, args


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = sorted({r["family"] for r in rows})
    fig, axes = plt.subplots(2, len(families), figsize=(5.5 * len(families), 8.0), squeeze=False)
    panels = (
        ("eps_mean", "fitted_slope", "planning error epsilon"),
        ("value_error_mean", "value_error_fitted_slope", "|V_hat(s_1) - V^pi(s_1)| of the planned policy"),
    )
    for row_axes, (key, slope_key, ylabel) in zip(axes, panels, strict=True):
        for ax, family in zip(row_axes, families, strict=True):
            anchor = None
            for r in (r for r in rows if r["family"] == family):
                ax.loglog(r["k"], r[key], "o-", label=f"{r['config']} (slope {r[slope_key]:+.2f})")
                anchor = anchor or (r["k"][0], r[key][0])
            k = np.array(rows[0]["k"], float)
            ax.loglog(k, anchor[1] * np.sqrt(anchor[0] / k), "k--", label="paper's rate: slope -1/2")
            ax.set_xlabel("exploration episodes K")
            ax.set_ylabel(ylabel + "\n(mean over rewards, instances)", fontsize=8)
            ax.set_title(family, fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(payload: dict) -> str:
    lines = [
        f"# reward_free_tabular ({payload['machine'].get('platform', '')}, {payload['date']})",
        "",
        f"command: `{payload['command']}`; settings: {payload['settings']}",
        "",
        "| family | config | quantity | fitted slope | " + " | ".join(f"K={k}" for k in payload["rows"][0]["k"]) + " |",
        "|---|---|---|---|" + "---|" * len(payload["rows"][0]["k"]),
    ]
    for r in payload["rows"]:
        for key, slope, label in (("eps_mean", "fitted_slope", "epsilon"),
                                  ("value_error_mean", "value_error_fitted_slope", "value error")):
            values = " | ".join(f"{e:.2e}" for e in r[key])
            lines.append(f"| {r['family']} | {r['config']} | {label} | {r[slope]:+.2f} | {values} |")
    lines += [
        "",
        "epsilon: mean over rewards and MDP instances of V*(s_1) - V^pi(s_1) in the true MDP; value error:",
        "the mean of |V_hat(s_1) - V^pi(s_1)|, the planned policy's value in the estimated model against",
        "the true one. Reference slope -1/2 (the paper's eps ~ d / sqrt(K)).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    s, args = parse_args(argv)
    key_tab, key_mix, key_rew = jax.random.split(jax.random.PRNGKey(s.seed), 3)
    tab = jax.vmap(lambda k: random_tabular_mdp(k, s.num_states, s.num_actions, s.horizon, s.concentration))(
        jax.random.split(key_tab, s.instances)
    )
    mix = jax.vmap(
        lambda k: random_linear_mixture_mdp(
            k, s.mixture_states, s.num_actions, s.horizon, s.mixture_dim, s.mixture_concentration
        )
    )(jax.random.split(key_mix, s.instances))

    def rewards_for(num_states):
        keys = jax.random.split(key_rew, s.rewards)
        return jax.vmap(lambda k: random_reward(k, num_states, s.num_actions, s.horizon, s.reward_density))(keys)

    first = jax.tree.map(lambda x: x[0], tab)
    configs = {
        "practical": lm.preset("practical", s.k_max, record_every=s.k_min),
        "theory": lm.preset("theory", s.k_max, mdp=first, record_every=s.k_min),
        "uniform": lm.preset("practical", s.k_max, record_every=s.k_min, policy="uniform"),
    }
    rows = [measure(s, f"tabular S={s.num_states} A={s.num_actions} H={s.horizon} (d={first.dim})", n, tab,
                    rewards_for(s.num_states), c) for n, c in configs.items()]
    mix_first = jax.tree.map(lambda x: x[0], mix)
    mix_configs = {
        "practical": configs["practical"],
        "uniform": configs["uniform"],
    }
    rows += [measure(s, f"linear mixture S={s.mixture_states} A={s.num_actions} H={s.horizon} (d={mix_first.dim})",
                     n, mix, rewards_for(s.mixture_states), c) for n, c in mix_configs.items()]

    payload = {**runlog.benchmark_header("reward_free_tabular", args.quick, argv, dataclasses.asdict(s)), "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"reward_free_tabular-{jax.default_backend()}{'-quick' if args.quick else ''}"
    runlog.write_json(out / f"{stem}.json", payload)
    (out / f"{stem}.md").write_text(markdown(payload))
    plot(rows, out / f"{stem}.png")
    print(markdown(payload))
    log(f"wrote {out / stem}.json / .md / .png")
    return payload


if __name__ == "__main__":
    main()
