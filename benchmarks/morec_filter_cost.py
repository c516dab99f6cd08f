"""Cost of MOREC's transition filter: model transitions/s of filtered against unfiltered rollouts.

Every model step of MOREC scores M = elites x ``samples_per_elite`` candidate next states of each
of B branches with H discriminators, H x M x B discriminator evaluations, against one ensemble
evaluation of B branches without the filter. This measures what that costs on the agent's own
pieces: a MOREC-MOPO agent (:func:`rlx.agents.morec.agent`) is built on a small dataset, with the
paper's network sizes (7 dynamics members of 4 x 200, 5 elites, discriminators of 256 x 256, a
256 x 256 SAC actor) trained briefly (timings do not depend on how well), its state is
initialised, and one program per variant rolls B dataset states ``--horizon`` steps in the
ensemble with the agent's policy, MOPO penalty and data-range clipping
(:func:`rlx.models.rollout.rollout`, as the agent's update does):

* ``unfiltered``: the sample of one uniformly drawn elite per branch (MOPO's ``sample_elite``);
* ``straightforward``: the filter written the obvious way: every candidate scored on its own
  broadcast (s, a, s'_m) by :func:`rlx.models.dynamics_reward.dynamics_reward`, the whole
  (H, M, B) batch at once, then argmax and gather;
* ``filter``: the agent's filter (:func:`rlx.models.filter.make_filter`).

Datasets: ``fridge`` (the refrigerator of MOREC's tests: 2,000 transitions, one observation and one
action dimension) and ``hopper-shaped`` (2,000 generated transitions with hopper's sizes: 11
observation and 3 action dimensions, where the discriminators' first layer is wider).

    python benchmarks/morec_filter_cost.py            # the grid below (a few minutes on 2 CPU cores)
    python benchmarks/morec_filter_cost.py --quick    # a smoke run on the refrigerator (about a minute); not a result
    python benchmarks/morec_filter_cost.py --sizes 2000/2/40 --datasets fridge

Sizes are ``B/samples_per_elite/H`` (M = 5 elites x samples_per_elite). Every program is compiled
ahead of time (``jax.jit(f).lower(...).compile()``, the persistent compilation cache off); a
timing is the median of ``--repeats`` calls after one untimed call, the variants of one size
called in turn so that they share the machine's load. Reported per size and variant: compile
time, seconds per model step, model transitions/s (B x horizon per call, live or not: a cut
branch costs the same), discriminator evaluations/s, the ratio to the unfiltered rollout and the
filter's speed-up over the straightforward form. Results: ``<out>/morec_filter_cost-<platform>``
``[-quick].{md,json}`` with the machine (load average at start and end), versions and settings.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rlx.agents import morec, sac
from rlx.buffers.dataset import Dataset
from rlx.envs.synthetic_dynamics import behaviour_dataset
from rlx.models import dynamics_reward as drw
from rlx.models import ensemble as ens
from rlx.models.filter import FilterConfig, candidates, make_filter, select
from rlx.models.rollout import ModelTransition, clip_next_obs, rollout, sample_elite
from rlx.run import logging as runlog

VARIANTS = ("unfiltered", "straightforward", "filter")
SIZES = {
    "fridge": ((500, 2, 10), (500, 2, 40), (2000, 2, 10), (2000, 1, 40), (2000, 2, 40)),
    "hopper-shaped": ((2000, 2, 10), (2000, 2, 40)),
}
QUICK_SIZES = {"fridge": ((100, 2, 4), (200, 1, 8)), "hopper-shaped": ((200, 2, 8),)}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_sizes(text: str) -> tuple[tuple[int, int, int], ...]:
    sizes = []
    for item in text.split(","):
        b, s, h = (int(v) for v in item.split("/"))
        sizes.append((b, s, h))
    return tuple(sizes)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=None, help="comma-separated: fridge, hopper-shaped (default: both; --quick: fridge)")
    p.add_argument("--sizes", default=None, help="B/samples_per_elite/H,... for every dataset (default: the grid)")
    p.add_argument("--horizon", type=int, default=2, help="model steps per timed call")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--selection", default="argmax", choices=("argmax", "softmax"))
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run, not a result")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    args.datasets = tuple(d for d in (args.datasets or ("fridge" if args.quick else "fridge,hopper-shaped")).split(",") if d)
    for name in args.datasets:
        if name not in SIZES:
            p.error(f"--datasets: {name!r}; allowed: {', '.join(SIZES)}")
    table = QUICK_SIZES if args.quick else SIZES
    args.grid = {name: parse_sizes(args.sizes) if args.sizes else table[name] for name in args.datasets}
    if args.quick:
        args.repeats = 1
    return args


def hopper_shaped_dataset(key, n: int = 2_000, obs_dim: int = 11, action_dim: int = 3) -> Dataset:
    """``n`` transitions of a smooth random system with hopper's observation and action sizes."""
    k_w, k_o, k_a, k_n = jax.random.split(key, 4)
    w = jax.random.normal(k_w, (obs_dim + action_dim, obs_dim)) / np.sqrt(obs_dim + action_dim)
    obs = jax.random.normal(k_o, (n, obs_dim))
    action = jax.random.uniform(k_a, (n, action_dim), minval=-1.0, maxval=1.0)
    next_obs = obs + 0.1 * jnp.tanh(jnp.concatenate([obs, action], -1) @ w) + 0.01 * jax.random.normal(k_n, obs.shape)
    return Dataset(
        observations=obs, actions=action, rewards=jnp.sum(next_obs - obs, -1), next_observations=next_obs,
        terminals=jnp.zeros(n, bool), timeouts=(jnp.arange(n) % 100) == 99,
    )


def make_dataset(name: str) -> Dataset:
    if name == "fridge":
        return behaviour_dataset(jax.random.PRNGKey(0), episodes=40, action_noise=0.3)
    return hopper_shaped_dataset(jax.random.PRNGKey(0))


def straightforward_filter(dr: drw.DynamicsReward, config: FilterConfig):
    """The filter's rule written the obvious way: (s, a) broadcast to every candidate, the
    dynamics reward of each full (s, a, s'_m) input, argmax / softmax, the kept row gathered."""

    def transition_fn(key, prediction) -> ModelTransition:
        k_cand, k_select = jax.random.split(key)
        next_obs, reward = candidates(k_cand, prediction, config.samples_per_elite, config.clip)
        m = next_obs.shape[0]
        obs = jnp.broadcast_to(prediction.obs, (m,) + prediction.obs.shape)
        action = jnp.broadcast_to(prediction.action, (m,) + prediction.action.shape)
        scores = drw.dynamics_reward(dr, obs, action, next_obs)  # (M, B)
        idx = select(k_select, scores, config.selection, config.temperature)
        rows = jnp.arange(idx.shape[0])
        kept = scores[idx, rows]
        terminated = kept < config.terminal_reward if config.terminal_reward > 0 else jnp.zeros(kept.shape, bool)
        return ModelTransition(next_obs=next_obs[idx, rows], reward=reward[idx, rows], terminated=terminated)

    return transition_fn


def build(name: str, max_h: int):
    """(agent, config, learner, dynamics reward with ``max_h`` discriminators, dataset) for ``name``."""
    dataset = make_dataset(name)
    config = morec.mopo_config(model_max_epochs=1, model_min_steps_per_epoch=0, clip_to_data=True)
    t0 = time.perf_counter()
    dynamics, _ = ens.train_dynamics(dataset, config.dynamics_config(), jax.random.PRNGKey(2), termination="never", progress=False)
    rcfg = drw.DynamicsRewardConfig(iterations=max_h, keep_last=max_h, keep_every=1, discriminator_steps=1)
    dr, _ = drw.train_dynamics_reward(dataset, rcfg, jax.random.PRNGKey(1), progress=False)
    agent = morec.agent("mopo", dataset, dynamics, config=config, dynamics_reward=dr, progress=False)
    state = agent.init(config, None, None, jax.random.PRNGKey(3))
    log(f"{name}: ensemble and {max_h} discriminators trained, agent state built in {time.perf_counter() - t0:.1f} s")
    return agent, config, state.learner, dr, dataset


def subset(dr: drw.DynamicsReward, h: int) -> drw.DynamicsReward:
    """``h`` of the discriminators, evenly spaced over the history (as MOREC-MOBILE's every 40th)."""
    step = dr.num_discriminators // h
    take = lambda x: x[::step][:h]  # noqa: E731
    return dr.replace(params=jax.tree.map(take, dr.params), low=take(dr.low), high=take(dr.high))


def program(agent, config, variant: str, fcfg: FilterConfig, horizon: int):
    """``run(learner, dynamics, dr, key, start) -> Rollout``: the agent's rollout with one variant."""
    sac_config = config.sac_config()
    penalty = agent.algorithm.rollout_penalty(config)

    def run(learner, dynamics, dr, key, start):
        if variant == "unfiltered":
            fn = sample_elite
        elif variant == "straightforward":
            fn = straightforward_filter(dr, fcfg)
        else:
            fn = make_filter(dr, fcfg)
        fn = clip_next_obs(fn, agent.obs_low, agent.obs_high)
        policy = lambda obs, k: sac.act(sac_config, learner, obs, k)  # noqa: E731
        return rollout(key, dynamics, policy, start, horizon, fn, penalty)

    return run


def measure(agent, config, learner, dr, dataset, size, args) -> dict:
    batch, spe, h = size
    fcfg = FilterConfig(samples_per_elite=spe, selection=args.selection).validate()
    dr_h = subset(dr, h)
    start = jnp.asarray(dataset.observations)[jax.random.randint(jax.random.PRNGKey(4), (batch,), 0, dataset.observations.shape[0])]
    key = jax.random.PRNGKey(5)
    inputs = (learner, agent.dynamics, dr_h, key, start)
    compiled, compile_s, outs = {}, {}, {}
    for variant in VARIANTS:
        t0 = time.perf_counter()
        compiled[variant] = jax.jit(program(agent, config, variant, fcfg, args.horizon)).lower(*inputs).compile()
        compile_s[variant] = time.perf_counter() - t0
        outs[variant] = jax.block_until_ready(compiled[variant](*inputs))  # the untimed call
    times = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            t0 = time.perf_counter()
            jax.block_until_ready(compiled[variant](*inputs))
            times[variant].append(time.perf_counter() - t0)
    m = agent.dynamics.num_elites * spe
    transitions = batch * args.horizon
    row = {"batch": batch, "samples_per_elite": spe, "candidates": m, "discriminators": h, "variants": {}}
    for variant in VARIANTS:
        med = statistics.median(times[variant])
        row["variants"][variant] = {
            "compile_seconds": round(compile_s[variant], 3),
            "seconds_per_call": [round(t, 5) for t in times[variant]],
            "seconds_per_step": round(med / args.horizon, 5),
            "seconds_per_step_min": round(min(times[variant]) / args.horizon, 5),
            "transitions_per_second": round(transitions / med, 1),
            "discriminator_evaluations_per_second": None if variant == "unfiltered" else round(h * m * transitions / med, 1),
        }
    v = row["variants"]
    row["unfiltered_over_filter"] = round(v["unfiltered"]["transitions_per_second"] / v["filter"]["transitions_per_second"], 2)
    row["filter_speedup_over_straightforward"] = round(
        v["filter"]["transitions_per_second"] / v["straightforward"]["transitions_per_second"], 3
    )
    # the two filters make the same choices (scores equal within float rounding)
    a, b = outs["straightforward"].transitions, outs["filter"].transitions
    row["same_choices_fraction"] = round(float(np.mean(np.all(np.isclose(a.next_obs, b.next_obs, atol=1e-5), -1))), 5)
    log(
        f"B={batch} M={m} H={h}: unfiltered {v['unfiltered']['transitions_per_second']:,.0f}/s, straightforward "
        f"{v['straightforward']['transitions_per_second']:,.0f}/s, filter {v['filter']['transitions_per_second']:,.0f}/s "
        f"(x{row['filter_speedup_over_straightforward']}; unfiltered / filter {row['unfiltered_over_filter']})"
    )
    return row


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    jax.config.update("jax_enable_compilation_cache", False)  # compile times are real compiles
    settings = {"datasets": list(args.datasets), "grid": {k: [list(s) for s in v] for k, v in args.grid.items()},
                "horizon": args.horizon, "repeats": args.repeats, "selection": args.selection,
                "ensemble": "7 members of 4 x 200, 5 elites", "discriminators": "256 x 256", "policy": "SAC actor 256 x 256"}
    header = runlog.benchmark_header("morec_filter_cost", args.quick, argv, settings)
    results = {}
    for name in args.datasets:
        max_h = max(h for _, _, h in args.grid[name])
        agent, config, learner, dr, dataset = build(name, max_h)
        results[name] = {
            "obs_dim": int(dataset.observations.shape[-1]), "action_dim": int(dataset.actions.shape[-1]),
            "rows": [measure(agent, config, learner, dr, dataset, size, args) for size in args.grid[name]],
        }
    if hasattr(os, "getloadavg"):
        header["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {**header, "results": results}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"morec_filter_cost-{jax.devices()[0].platform}" + ("-quick" if args.quick else "")
    runlog.write_json(out_dir / f"{stem}.json", result)
    (out_dir / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result) -> str:
    m, s = result["machine"], result["settings"]
    lines = [
        f"# Cost of MOREC's transition filter ({result['date']})", "",
        f"command: `{result['command']}`  ",
        f"machine: {m.get('cpu_model', '?')}, {m.get('cpu_count')} cores, {m.get('device_kind', m.get('platform'))}; "
        f"load average at start {m.get('load_average_at_start')}, at end {m.get('load_average_at_end')}  ",
        f"jax {result['versions'].get('jax')}; rollout of the agent's policy, {s['horizon']} model steps per call, "
        f"median of {s['repeats']} calls after one untimed call; {s['selection']} selection; {s['ensemble']}, "
        f"discriminators {s['discriminators']}, {s['policy']}", "",
        "B: branches, M: candidates per branch (5 elites x samples per elite), H: discriminators. Transitions/s count "
        "model steps of all B branches; discriminator evaluations/s = H x M x transitions/s.", "",
    ]
    for name, res in result["results"].items():
        lines += [
            f"## {name} (observation {res['obs_dim']}, action {res['action_dim']})", "",
            "| B | M | H | unfiltered transitions/s | straightforward filter transitions/s | filter transitions/s "
            "| filter / straightforward | unfiltered / filter | filter discriminator evals/s | compile s (unfiltered / straightforward / filter) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in res["rows"]:
            v = r["variants"]
            lines.append(
                f"| {r['batch']} | {r['candidates']} | {r['discriminators']} | {v['unfiltered']['transitions_per_second']:,.0f} "
                f"| {v['straightforward']['transitions_per_second']:,.0f} | {v['filter']['transitions_per_second']:,.0f} "
                f"| {r['filter_speedup_over_straightforward']:.2f} | {r['unfiltered_over_filter']:.1f} "
                f"| {v['filter']['discriminator_evaluations_per_second'] / 1e6:.2f} M "
                f"| {v['unfiltered']['compile_seconds']:.1f} / {v['straightforward']['compile_seconds']:.1f} / {v['filter']['compile_seconds']:.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
