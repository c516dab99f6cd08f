"""BC, TD3+BC, IQL, MOPO, MOBILE and their MOREC variants side by side on two offline datasets,
several seeds each, aggregated with ``rlx report``'s statistics (IQM with bootstrap intervals).

    python benchmarks/offline_claims.py                     # --scale cpu: about 40 minutes on 2 CPU cores
    python benchmarks/offline_claims.py --scale paper       # the papers' settings, for an accelerator
    python benchmarks/offline_claims.py --datasets fridge --variants bc,mopo,morec_mopo --seeds 4
    python benchmarks/offline_claims.py --tiny              # seconds of running: a smoke test, not a result

Datasets (``--datasets``):

* ``fridge``: the refrigerator with known dynamics (:mod:`rlx.envs.synthetic_dynamics`, the
  synthetic task of MOREC): a noisy controller holding 8 C recorded for 40 episodes, evaluation
  in the real env asking for 4 C. Normalized score 100 (R - random) / (reference - random), with
  random = uniform actions and reference = the noiseless 4 C controller (as ``morec.py``).
* ``<env>-<kind>`` for ``hopper``, ``halfcheetah``, ``walker2d`` (brax) and a D4RL kind
  (``medium``, ...): collected by rlx's own SAC expert (:mod:`rlx.run.collect`, cached in
  ``--data-dir`` as ``offline_mbrl.py`` does); D4RL normalized score with the dataset's random
  and expert returns.

Variants (``--variants``): ``bc``, ``td3_bc``, ``iql`` (model-free), ``mopo``, ``mobile`` (with
their paper's per-task preset where one exists), ``morec_mopo``, ``morec_mobile`` (MOREC's
per-task preset), and ``morec_mopo_base`` / ``morec_mobile_base``: MOREC with the base
algorithm's penalty coefficient for the task instead of MOREC's (e.g. hopper-medium: MOREC-MOPO
lambda 15, MOPO 5). Per dataset, one dynamics ensemble is shared by every model-based variant
and one dynamics reward (MOREC-MOPO averages every 10th discriminator, MOREC-MOBILE every 40th)
by the MOREC ones; both are saved in the runs folder and loaded again by a later invocation.
A ``_base`` variant whose config equals its MOREC variant's (a dataset without per-task presets,
where both penalties are the defaults) is not trained twice: its row points to the other.

Every variant trains ``--seeds`` seeds vmapped with ``rlx.run.run`` into
``<runs-dir>/<dataset>/<variant>`` (config.json records the variant and the dataset). A variant
whose folder has a ``summary.json`` is read back, not trained again, so a stopped benchmark is
continued by running the same command; a folder written with other settings is refused.
After every variant the finished run folders of the dataset are aggregated with
:func:`rlx.run.report.aggregate` (score: each seed's last evaluation, normalized per dataset)
and ``benchmarks/results/offline_claims-<scale>-<platform>[-tiny].{md,json}`` and one report
plot per dataset (``...-<dataset>.png``) are written, so a stopped run loses nothing.

Scales (``--scale``):

* ``cpu``: every agent with its paper / per-task preset, then small sizes: 64 x 64 actor and
  critic, an ensemble of 7 x (64, 64) (fridge) or 7 x (64, 64, 64) (hopper, at most 20 epochs),
  rollouts from 500 / 1,000 starts every 250 gradient steps, MOREC rollouts of 20 steps (not
  100), a dynamics reward of 400 / 200 iterations with 128 x 128 networks, 3,000 (fridge) and
  5,000 (hopper) gradient steps, a 100,000-transition hopper dataset from a 30,000-step 64 x 64
  SAC expert, 5 seeds. Measured on 2 cores (load 0.3-1.9): 7 minutes for the fridge, 27 for
  hopper-medium with its dataset cached in ``--data-dir`` (collecting it takes about 4 more).
  Every setting that differs from the paper scale's is listed in the output, field by field.
* ``paper``: the papers' settings: each agent's defaults with its paper / per-task preset (1M
  gradient steps, 3M for MOBILE), 1M-transition datasets from a 1M-step expert, the dynamics
  reward's 400 iterations, 5 seeds; checkpoints, so a stopped variant continues from its latest.

``--tiny`` replaces the scale's sizes by toy ones (tiny networks and datasets, tens of gradient
steps, 3 seeds; the presets and the paper scale's checkpoints stay): a smoke test that every
program compiles and runs, not a result. It writes ``-tiny`` files and uses its own runs folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import re
import shutil
import sys
import time
import types
from pathlib import Path

from rlx.agents import bc, iql, mobile, mopo, morec, td3_bc
from rlx.buffers.dataset import normalized_score
from rlx.run import logging as runlog
from rlx.run import report as rlx_report
from rlx.run import run

BENCHMARKS = Path(__file__).resolve().parent
BRAX_ENVS = ("hopper", "halfcheetah", "walker2d")
KINDS = ("random", "medium", "medium-replay", "expert", "medium-expert")  # rlx.buffers.dataset.KINDS
DEFAULT_DATASETS = ("fridge", "hopper-medium")


@dataclasses.dataclass(frozen=True)
class Variant:
    algo: object  # the agent module (bc, mopo, ...) or MOREC variant (morec.MOREC_MOPO)
    base: str | None = None  # "mopo" / "mobile" for the model-based ones
    morec: bool = False
    base_penalty: bool = False  # MOREC with the base algorithm's penalty coefficient

    @property
    def model_based(self) -> bool:
        return self.base is not None


VARIANTS = {
    "bc": Variant(bc),
    "td3_bc": Variant(td3_bc),
    "iql": Variant(iql),
    "mopo": Variant(mopo, "mopo"),
    "morec_mopo": Variant(morec.MOREC_MOPO, "mopo", morec=True),
    "morec_mopo_base": Variant(morec.MOREC_MOPO, "mopo", morec=True, base_penalty=True),
    "mobile": Variant(mobile, "mobile"),
    "morec_mobile": Variant(morec.MOREC_MOBILE, "mobile", morec=True),
    "morec_mobile_base": Variant(morec.MOREC_MOBILE, "mobile", morec=True, base_penalty=True),
}
BASE_MODULES = {"mopo": mopo, "mobile": mobile}

# The ensemble fields of a model-based config: set from the shared ensemble's settings in every
# variant's config, so that config.json describes the model the run used.
MODEL_FIELDS = (
    "ensemble_size", "num_elites", "model_hidden_sizes", "model_lr", "model_batch_size", "model_max_epochs",
    "model_max_holdout", "model_max_epochs_since_update", "model_min_steps_per_epoch",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one scale changes for one family of datasets (the fridge, or brax), on top of every
    agent's defaults and its paper / per-task preset."""

    model_free: dict  # BC, TD3+BC, IQL
    model_based: dict  # MOPO, MOBILE and the MOREC variants
    morec: dict  # the MOREC variants only, after model_based
    mobile: dict  # MOBILE and MOREC-MOBILE only
    model: dict  # the shared dynamics ensemble (model_* fields of a model-based config)
    reward_iterations: int  # the shared dynamics reward: adversarial iterations (a multiple of 40)
    reward_hidden: tuple[int, ...]  # its discriminator and generator widths
    dataset: dict  # fridge: episodes; brax: size, expert_steps, expert_hidden, num_envs


@dataclasses.dataclass(frozen=True)
class Scale:
    seeds: int
    fridge: Settings
    brax: Settings
    checkpoints: bool  # checkpoints during training (a stopped variant continues from its latest)


PAPER_DATASET = dict(size=1_000_000, expert_steps=None, expert_hidden=None, num_envs=100)
PAPER = Settings(
    model_free={}, model_based={}, morec={}, mobile={}, model={}, reward_iterations=400, reward_hidden=(256, 256),
    dataset=PAPER_DATASET,
)
SCALES = {
    "cpu": Scale(
        seeds=5,
        fridge=Settings(
            model_free=dict(total_steps=3_000, eval_every=500, hidden_sizes=(64, 64), eval_episodes=10),
            model_based=dict(total_steps=3_000, eval_every=500, rollout_freq=250, rollout_batch_size=500,
                             hidden_sizes=(64, 64), eval_episodes=10),
            morec=dict(rollout_length=20), mobile={},
            model=dict(model_hidden_sizes=(64, 64), model_min_steps_per_epoch=200, model_max_epochs=50),
            reward_iterations=400, reward_hidden=(128, 128), dataset=dict(episodes=40),
        ),
        brax=Settings(
            model_free=dict(total_steps=5_000, eval_every=1_000, hidden_sizes=(64, 64), eval_episodes=5),
            model_based=dict(total_steps=5_000, eval_every=1_000, rollout_freq=250, rollout_batch_size=1_000,
                             hidden_sizes=(64, 64), eval_episodes=5),
            morec=dict(rollout_length=20), mobile={},
            model=dict(model_hidden_sizes=(64, 64, 64), model_max_epochs=20),
            reward_iterations=200, reward_hidden=(128, 128),
            dataset=dict(size=100_000, expert_steps=30_000, expert_hidden=(64, 64), num_envs=100),
        ),
        checkpoints=False,
    ),
    "paper": Scale(seeds=5, fridge=dataclasses.replace(PAPER, dataset=dict(episodes=40)), brax=PAPER, checkpoints=True),
}

# --tiny: toy sizes for either scale (the presets and the scale's checkpoints stay).
TINY_OFFLINE = dict(total_steps=20, eval_every=10, hidden_sizes=(8, 8), batch_size=32, eval_episodes=2)
TINY = Settings(
    model_free=TINY_OFFLINE,
    model_based=dict(TINY_OFFLINE, rollout_freq=10, rollout_batch_size=8),
    morec=dict(rollout_length=3), mobile=dict(num_next_samples=2),
    model=dict(ensemble_size=3, num_elites=2, model_hidden_sizes=(8, 8), model_max_epochs=2,
               model_min_steps_per_epoch=8, model_max_holdout=50),
    reward_iterations=40, reward_hidden=(8, 8),
    dataset=dict(size=2_000, expert_steps=2_000, expert_hidden=(16, 16), num_envs=10, episodes=10),
)
TINY_SEEDS = 3


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------
def family(dataset: str) -> str:
    return "fridge" if dataset == "fridge" else "brax"


def settings_of(scale: Scale, dataset: str, tiny: bool) -> Settings:
    return TINY if tiny else getattr(scale, family(dataset))


def preset_of(algo, dataset: str) -> dict:
    """The agent's per-task preset for ``dataset`` (the model-based ones), else its ``paper`` preset."""
    presets = getattr(algo, "PRESETS", {}) or {}
    chosen = presets.get(dataset) or presets.get("paper") or {}
    return {k: v for k, v in chosen.items() if not k.startswith("_")}


def model_settings(settings: Settings) -> dict:
    """Every ensemble field of the shared dynamics model (MOPO's defaults, then the scale's)."""
    config = mopo.MOPOConfig().override(**settings.model)
    return {name: getattr(config, name) for name in MODEL_FIELDS}


def variant_config(name: str, dataset: str, settings: Settings):
    """The config ``name`` trains with on ``dataset``: the agent's defaults, its preset, the
    scale's overrides; model-based: the shared ensemble's fields and the shared dynamics
    reward's history (MOREC)."""
    v = VARIANTS[name]
    if not v.model_based:
        return v.algo.Config().override(**{**preset_of(v.algo, dataset), **settings.model_free})
    fields = {**preset_of(v.algo, dataset), **settings.model_based}
    if v.morec:
        fields.update(settings.morec)
        n = settings.reward_iterations
        fields.update(reward_iterations=n, reward_keep_last=n, reward_keep_every=10 if v.base == "mopo" else 40)
    if v.base == "mobile":
        fields.update(settings.mobile)
    if v.base_penalty:  # the base algorithm's penalty coefficient for this task (its preset, else its default)
        base = BASE_MODULES[v.base]
        fields["penalty_coef"] = base.Config().override(**preset_of(base, dataset)).penalty_coef
    return v.algo.Config().override(**{**fields, **model_settings(settings)})


def paper_config(name: str, dataset: str):
    return variant_config(name, dataset, dataclasses.replace(PAPER, dataset={}))


def plain(value):
    """``value`` as JSON reads it back (tuples as lists), to compare with a saved file."""
    return json.loads(json.dumps(value, default=lambda x: x.tolist() if hasattr(x, "tolist") else str(x)))


def config_dict(config) -> dict:
    return plain(config.to_dict())


def twin_of(name: str, dataset: str, settings: Settings, chosen: list[str]) -> str | None:
    """The MOREC variant a ``_base`` variant equals on ``dataset`` (same config), if it is run too."""
    if not name.endswith("_base") or (twin := name.removesuffix("_base")) not in chosen:
        return None
    same = config_dict(variant_config(name, dataset, settings)) == config_dict(variant_config(twin, dataset, settings))
    return twin if same else None


def departures(name: str, dataset: str, config) -> dict:
    """Fields of ``config`` that differ from the paper scale's config of the variant."""
    mine, paper = config_dict(config), config_dict(paper_config(name, dataset))
    return {k: {"here": mine[k], "paper": paper.get(k)} for k in mine if mine[k] != paper.get(k)}


# ---------------------------------------------------------------------------------------------
# Shared stages: dataset, normalization, dynamics ensemble, dynamics reward
# ---------------------------------------------------------------------------------------------
def sibling(name: str):
    """A module of benchmarks/ by file (the benchmarks are scripts, not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Shared:
    """A dataset's shared stages, made when first needed and kept in ``<runs>/<dataset>/shared``
    (stages.json: timings, normalization, the settings they were made with; the dynamics model and
    the dynamics reward as saved folders), so a later invocation loads them."""

    def __init__(self, dataset: str, settings: Settings, args):
        self.name, self.settings, self.args = dataset, settings, args
        self.folder = Path(args.runs_dir) / dataset / "shared"
        self.file = self.folder / "stages.json"
        self.stages = json.loads(self.file.read_text()) if self.file.exists() else {}
        self._data = self._dynamics = self._rewards = None

    def _save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        runlog.write_json(self.file, self.stages)

    def _same(self, stage: str, spec: dict) -> bool:
        return self.stages.get(stage, {}).get("spec") == plain(spec)

    @property
    def env(self):
        """What rlx.run.run evaluates in: an env object and its params, or a registered name."""
        if self.name == "fridge":
            from rlx.envs.synthetic_dynamics import make_fridge

            return make_fridge()
        return f"brax/{self.name.split('-', 1)[0]}", None

    def data(self):
        """(dataset, info): info carries the normalization and the data policy's return."""
        if self._data is None:
            self._data = self._fridge() if self.name == "fridge" else self._brax()
        return self._data

    def _fridge(self):
        import jax
        import jax.numpy as jnp

        from rlx.envs.synthetic_dynamics import behaviour_dataset, controller
        from rlx.run.train import evaluate

        episodes = self.settings.dataset["episodes"]
        t0 = time.perf_counter()
        dataset = behaviour_dataset(jax.random.PRNGKey(self.args.seed), episodes=episodes, action_noise=0.3)
        jax.block_until_ready(dataset.observations)
        seconds = time.perf_counter() - t0
        spec = self.data_spec()
        if not self._same("normalization", spec):
            env, env_params = self.env
            t0 = time.perf_counter()
            # as benchmarks/morec.py: uniform random actions and the noiseless 4 C controller, 50 episodes each
            k_r, k_e = jax.random.split(jax.random.PRNGKey(99))
            rand = float(jnp.mean(evaluate(lambda o, k: jax.random.uniform(k, o.shape, minval=-1, maxval=1),
                                           env, env_params, k_r, 50)))
            ref = float(jnp.mean(evaluate(lambda o, k: controller(o, k, set_point=0.4, action_noise=0.0),
                                          env, env_params, k_e, 50)))
            # the policy that made the data: the 8 C controller with the dataset's action noise
            behaviour = float(jnp.mean(evaluate(lambda o, k: controller(o, k, action_noise=0.3),
                                                env, env_params, jax.random.PRNGKey(98), 50)))
            self.stages["normalization"] = {
                "spec": spec, "random": rand, "high": ref, "data_policy": behaviour,
                "high_is": "the noiseless 4 C controller", "seconds": round(time.perf_counter() - t0, 2),
            }
            self._save()
        self.stages["dataset"] = {"seconds": round(seconds, 2), "cached": False, "size": int(dataset.size)}
        n = self.stages["normalization"]
        info = types.SimpleNamespace(env="Fridge-v0", kind="behaviour", random_return=n["random"],
                                     expert_return=n["high"], policy_return=n["data_policy"])
        return dataset, info

    def _brax(self):
        env_name, kind = f"brax/{self.name.split('-', 1)[0]}", self.name.split("-", 1)[1]
        d = self.settings.dataset
        hidden = d["expert_hidden"]
        ns = types.SimpleNamespace(
            data_dir=self.args.data_dir, seed=self.args.seed, dataset_size=d["size"], expert_steps=d["expert_steps"],
            expert_hidden=",".join(map(str, hidden)) if hidden else None, num_envs=d["num_envs"],
        )
        data, seconds, cached = sibling("offline_mbrl").load_or_collect(ns, env_name, [kind])
        dataset, info = data[kind]
        earlier = self.stages.get("dataset", {})
        collected = (earlier.get("collect_seconds") if self._same("dataset", self.data_spec()) else None) if cached else seconds
        self.stages["dataset"] = {"spec": self.data_spec(), "seconds": round(seconds, 2), "cached": cached,
                                  "collect_seconds": None if collected is None else round(collected, 2),
                                  "size": int(dataset.size), "expert_steps": info.expert_steps}
        self.stages["normalization"] = {"spec": self.data_spec(), "random": info.random_return, "high": info.expert_return,
                                        "data_policy": info.policy_return, "high_is": "the expert's return"}
        self._save()
        return dataset, info

    def data_spec(self) -> dict:
        """What the dataset (and so its normalization) is made from."""
        if self.name == "fridge":
            return {"episodes": self.settings.dataset["episodes"], "seed": self.args.seed, "action_noise": 0.3}
        return {**self.settings.dataset, "seed": self.args.seed, "data_dir": str(self.args.data_dir)}

    def normalization(self) -> tuple[float, float]:
        if not self._same("normalization", self.data_spec()):
            self.data()
        n = self.stages["normalization"]
        return n["random"], n["high"]

    def data_policy_score(self) -> float | None:
        n = self.stages.get("normalization") or {}
        if n.get("data_policy") is None or not valid((n["random"], n["high"])):
            return None
        return float(normalized_score(n["data_policy"], random_return=n["random"], expert_return=n["high"]))

    def dynamics(self):
        import jax

        from rlx.models import ensemble as ens
        from rlx.models import termination as term_rules

        if self._dynamics is not None:
            return self._dynamics
        dataset, _ = self.data()
        config = mopo.MOPOConfig().override(**model_settings(self.settings)).dynamics_config()
        rule = "never" if self.name == "fridge" else term_rules.rule_for_env(self.env[0])
        spec = {"config": config.to_dict(), "termination": rule, "seed": self.args.seed,
                "dataset": self.data_spec()}
        path = self.folder / "dynamics"
        if self._same("dynamics", spec) and path.exists():
            self._dynamics = ens.load_dynamics(path)
            return self._dynamics
        t0 = time.perf_counter()
        self._dynamics, report = ens.train_dynamics(dataset, config, jax.random.PRNGKey(self.args.seed),
                                                    termination=rule, progress=not self.args.no_progress)
        jax.block_until_ready(self._dynamics.params)
        seconds = time.perf_counter() - t0
        if path.exists():
            shutil.rmtree(path)
        ens.save_dynamics(path, self._dynamics)
        self.stages["dynamics"] = {"spec": spec, "seconds": round(seconds, 2), "epochs": report.epochs,
                                   "compile_seconds": round(report.compile_seconds, 2)}
        self._save()
        return self._dynamics

    def dynamics_reward(self, base: str):
        """MOREC's dynamics reward: one adversarial run; MOREC-MOPO averages every 10th
        discriminator of it, MOREC-MOBILE every 40th (every 4th of those)."""
        import jax

        from rlx.models import dynamics_reward as drw

        if self._rewards is None:
            dataset, _ = self.data()
            n, hidden = self.settings.reward_iterations, tuple(self.settings.reward_hidden)
            config = drw.DynamicsRewardConfig(iterations=n, keep_last=n, keep_every=10, hidden_sizes=hidden,
                                              generator_hidden_sizes=hidden)
            spec = {"config": config.to_dict(), "seed": self.args.seed + 1, "dataset": self.data_spec()}
            path = self.folder / "dynamics_reward"
            if self._same("dynamics_reward", spec) and path.exists():
                every_10th = drw.load_dynamics_reward(path)
            else:
                t0 = time.perf_counter()
                every_10th, _ = drw.train_dynamics_reward(dataset, config, jax.random.PRNGKey(self.args.seed + 1),
                                                          progress=not self.args.no_progress)
                jax.block_until_ready(every_10th.params)
                seconds = time.perf_counter() - t0
                if path.exists():
                    shutil.rmtree(path)
                drw.save_dynamics_reward(path, every_10th)
                self.stages["dynamics_reward"] = {"spec": spec, "seconds": round(seconds, 2)}
                self._save()
            every_40th = every_10th.every(4)
            self._rewards = {"mopo": every_10th, "mobile": every_40th}
        return self._rewards[base]


# ---------------------------------------------------------------------------------------------
# One variant: trained, or read back from its finished run folder
# ---------------------------------------------------------------------------------------------
def run_folder(args, dataset: str, name: str) -> Path:
    return Path(args.runs_dir) / dataset / name


def check_folder(folder: Path, config, args) -> None:
    """Refuse a finished run folder written with other settings (before anything is compiled)."""
    if not (folder / "summary.json").exists():
        return
    info = json.loads((folder / "config.json").read_text())
    theirs, mine = info.get("config", {}), config_dict(config)
    differ = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
    if info.get("num_seeds") != args.seeds:
        differ.append(f"num_seeds ({info.get('num_seeds')} there, {args.seeds} now)")
    if info.get("seed") != args.seed:
        differ.append(f"seed ({info.get('seed')} there, {args.seed} now)")
    if differ:
        raise SystemExit(
            f"offline_claims: {folder} holds a finished run with other settings ({', '.join(differ)}); "
            "pass another --runs-dir or remove that folder"
        )


def train_variant(name: str, config, shared: Shared, args, folder: Path) -> str:
    """Train ``name`` into ``folder``; returns "trained" or why it did not finish."""
    from rlx.run import CheckpointError
    from rlx.run.nan_guard import NonFiniteMetricError

    v = VARIANTS[name]
    dataset, info = shared.data()
    if not v.model_based:
        agent = v.algo.agent(dataset, config=config, info=info)
    elif v.morec:
        agent = morec.agent(v.algo, dataset, shared.dynamics(), config=config, info=info,
                            dynamics_reward=shared.dynamics_reward(v.base))
    else:
        agent = v.algo.agent(dataset, shared.dynamics(), config=config, info=info)
    env, env_params = shared.env
    extra = {"variant": name, "dataset": shared.name, "benchmark": "offline_claims",
             "scale": args.scale + ("-tiny" if args.tiny else "")}
    if v.morec:
        extra["dynamics_reward_hidden_sizes"] = list(shared.settings.reward_hidden)
    options = dict(env_params=env_params, seed=args.seed, num_seeds=args.seeds, out_dir=folder,
                   progress=not args.no_progress, extra_info=extra)
    if not SCALES[args.scale].checkpoints:
        options["checkpoint_every"] = 0
    else:
        options["keep_checkpoints"] = 1
    started = (folder / "checkpoints").is_dir() and any((folder / "checkpoints").iterdir())
    try:
        if started:
            print(f"[offline_claims] {folder}: continuing from its latest checkpoint", file=sys.stderr, flush=True)
            try:
                run(agent, config, env, resume=True, **options)
                return "trained"
            except CheckpointError as err:
                print(f"[offline_claims] {folder}: cannot continue ({err}); training again", file=sys.stderr)
        run(agent, config, env, overwrite=True, **options)
        return "trained"
    except NonFiniteMetricError as err:
        return f"stopped: {err}"


def valid(norm: tuple[float, float]) -> bool:
    return norm[1] > norm[0]


def read_variant(name: str, folder: Path, norm: tuple[float, float]) -> dict:
    """A finished run folder, aggregated alone: IQM of the normalized scores with its interval
    (of the returns when the normalization is undefined: a reference not above random)."""
    summary = json.loads((folder / "summary.json").read_text())
    info = json.loads((folder / "config.json").read_text())
    report = rlx_report.aggregate([folder], normalization={info["env"]: norm} if valid(norm) else None)
    (task,) = report.tasks
    if valid(norm):
        (agg,) = report.aggregates
        per_seed = 100.0 * rlx_report.normalize(task.scores, *norm)
        middle, ci = 100.0 * agg.iqm, [100.0 * agg.ci[0], 100.0 * agg.ci[1]]
    else:
        per_seed, middle, ci = task.scores, task.iqm, list(task.ci)
    return {
        "variant": name, "agent": info["agent"], "folder": str(folder), "seeds": int(task.scores.size),
        "normalized": valid(norm), "iqm": middle, "ci": ci,
        "mean": float(per_seed.mean()), "std": float(per_seed.std()), "per_seed": per_seed.tolist(),
        "final_return_per_seed": task.scores.tolist(),
        "compile_seconds": summary["compile_seconds"], "run_seconds": summary["run_seconds"],
        "wall_seconds": summary["compile_seconds"] + summary["run_seconds"],
        "gradient_steps": summary.get("gradient_steps_per_seed"), "config": info["config"],
    }


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------
def fmt_seconds(s) -> str:
    return "-" if s is None else f"{s:,.0f} s"


def describe_departures(result: dict) -> list[str]:
    lines = []
    for dataset, d in result["datasets"].items():
        for name, fields in d["departures"].items():
            if fields:
                text = ", ".join(f"{k} {json.dumps(v['here'])} (paper {json.dumps(v['paper'])})" for k, v in fields.items())
                lines.append(f"- {dataset}, {name}: {text}")
        for stage, text in d["stage_departures"].items():
            lines.append(f"- {dataset}, {stage}: {text}")
    return lines


def render(result: dict) -> str:
    h, s = result["header"], result["header"]["settings"]
    m = h["machine"]
    tiny = " (TINY smoke run: toy sizes, not a result)" if s["tiny"] else ""
    lines = [
        f"# Offline RL claims: BC, TD3+BC, IQL, MOPO, MOBILE and MOREC, `--scale {s['scale']}`{tiny}",
        "",
        f"- date: {h['date']}",
        f"- command: `{h['command']}`",
        f"- machine: {m.get('cpu_model', '?')}, {m.get('cpu_count')} CPU cores, device {m.get('device_kind')} "
        f"({m.get('platform')}); load average at start {m.get('load_average_at_start')}, "
        f"at end {m.get('load_average_at_end')}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in h['versions'].items())}",
        f"- seeds: {s['seeds']} per variant (vmapped, `rlx.run.run`, seed {s['seed']}); runs in `{s['runs_dir']}`",
        "",
        "Score: each seed's last evaluation return, normalized per dataset, 100 (R - low) / (high - low). "
        "IQM: interquartile mean over the seeds with its 95 % percentile bootstrap interval "
        "(`rlx.run.report.aggregate`: 2,000 resamples, seed 0); mean +- std over the seeds. Wall time: "
        "compile + run of the variant's vmapped seeds (shared stages below). MOPO and MOBILE run with their "
        "paper's per-task preset, the MOREC variants with MOREC's, where the dataset has one; `_base`: MOREC "
        "with the base algorithm's penalty coefficient.",
    ]
    for dataset, d in result["datasets"].items():
        n = d.get("normalization") or {}
        lines += ["", f"## {dataset}", ""]
        if n and valid((n["random"], n["high"])):
            lines.append(f"Normalization: low = {n['random']:.2f} (uniform random actions), high = {n['high']:.2f} "
                         f"({n['high_is']}). Data policy: {fmt(d['data_policy_score'])}.")
            lines.append("")
        elif n:
            lines.append(f"Normalization undefined: {n['high_is']} {n['high']:.2f} is not above uniform random actions' "
                         f"{n['random']:.2f}; the scores below are evaluation returns, not normalized.")
            lines.append("")
        lines += ["| variant | agent | IQM [95% CI] | mean +- std | per seed | data policy | wall (compile + run) |",
                  "|---|---|---|---|---|---|---|"]
        data_policy = fmt(d["data_policy_score"])
        for r in d["rows"]:
            if "same_as" in r:
                lines.append(f"| {r['variant']} | {VARIANTS[r['variant']].algo.NAME} | = {r['same_as']} (same config on "
                             f"this dataset, not trained twice) | | | {data_policy} | - |")
            elif "error" in r:
                lines.append(f"| {r['variant']} | {VARIANTS[r['variant']].algo.NAME} | {r['error']} | | | {data_policy} | - |")
            else:
                lines.append(
                    f"| {r['variant']} | {r['agent']} | {r['iqm']:.1f} [{r['ci'][0]:.1f}, {r['ci'][1]:.1f}] "
                    f"| {r['mean']:.1f} +- {r['std']:.1f} | {', '.join(f'{x:.1f}' for x in r['per_seed'])} "
                    f"| {data_policy} | {fmt_seconds(r['wall_seconds'])} ({r['compile_seconds']:.0f} + "
                    f"{r['run_seconds']:.0f}){' reused' if r.get('reused') else ''} |"
                )
        stages = d.get("stages") or {}
        parts = []
        for label, key in (("dataset", "dataset"), ("reference returns", "normalization"), ("dynamics ensemble", "dynamics"),
                           ("dynamics reward", "dynamics_reward")):
            if key in stages and stages[key].get("seconds") is not None:
                extra = ""
                if stages[key].get("cached"):
                    collected = stages[key].get("collect_seconds")
                    extra = " (loaded from --data-dir" + (f"; collected in {collected:.0f} s)" if collected else ")")
                if key == "dynamics" and stages[key].get("epochs") is not None:
                    extra += f", {stages[key]['epochs']} epochs"
                parts.append(f"{label} {stages[key]['seconds']:.0f} s{extra}")
        if parts:
            lines += ["", "Shared stages (wall time, compile included; made once per dataset): " + "; ".join(parts) + "."]
        if d.get("plot"):
            lines += ["", f"![rlx report of {dataset}]({d['plot']})"]
    lines += ["", "## Settings other than the papers'", ""]
    lines += describe_departures(result) or ["- none"]
    return "\n".join(lines) + "\n"


def fmt(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def stage_departures(dataset: str, settings: Settings, scale_name: str, tiny: bool, seeds: int) -> dict:
    out = {}
    if dataset != "fridge":
        d = settings.dataset
        if d["size"] != PAPER_DATASET["size"] or d["expert_steps"] is not None or d["expert_hidden"] is not None:
            out["dataset"] = (f"{d['size']:,} transitions (paper 1,000,000), expert SAC {d['expert_steps'] or 'default'} "
                              f"env steps (paper 1,000,000) with widths {d['expert_hidden'] or 'default'} (paper 256 x 256)")
    if settings.reward_iterations != PAPER.reward_iterations or tuple(settings.reward_hidden) != PAPER.reward_hidden:
        out["dynamics reward"] = (f"{settings.reward_iterations} adversarial iterations (paper 400), widths "
                                  f"{'x'.join(map(str, settings.reward_hidden))} (paper 256x256)")
    if seeds != 5:
        out["seeds"] = f"{seeds} (paper scale: 5)"
    return out


def write(result: dict, out: Path, stem: str) -> None:
    if hasattr(os, "getloadavg"):
        result["header"]["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    runlog.write_json(out / f"{stem}.json", result)
    (out / f"{stem}.md").write_text(render(result))


def aggregate_dataset(d: dict, folders: list[Path], norm, env_name: str, args, out: Path, stem: str, dataset: str) -> None:
    """The rlx report of every finished run folder of the dataset: report.md / .csv / .png in the
    dataset's runs folder, the png next to the results too."""
    if not folders:
        return
    report = rlx_report.aggregate(folders, normalization={env_name: norm} if valid(norm) else None)
    paths = rlx_report.write_report(report, Path(args.runs_dir) / dataset / "report")
    png = f"{stem}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', dataset)}.png"
    shutil.copyfile(paths["png"], out / png)
    d["plot"] = png
    d["report"] = str(paths["md"])
    d["aggregates"] = [{"label": a.label, "iqm": 100.0 * a.iqm, "ci": [100.0 * a.ci[0], 100.0 * a.ci[1]],
                        "scores": a.num_scores} for a in report.aggregates]


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def dataset_names() -> list[str]:
    return ["fridge", *(f"{env}-{kind}" for env in BRAX_ENVS for kind in KINDS)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__)
    p.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    p.add_argument("--datasets", default=",".join(DEFAULT_DATASETS), help="comma-separated: fridge or <env>-<kind>")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--seeds", type=int, default=None, help="vmapped seeds per variant (default: the scale's)")
    p.add_argument("--seed", type=int, default=0, help="first seed; also the seed of the datasets and shared models")
    p.add_argument("--tiny", action="store_true", help="toy sizes: checks that everything compiles and runs")
    p.add_argument("--runs-dir", default=None, help="run folders (default: runs/offline_claims-<scale>[-tiny])")
    p.add_argument("--data-dir", default="data/offline", help="collected brax datasets (shared with offline_mbrl.py)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", default=str(BENCHMARKS / "results"))
    args = p.parse_args(argv)
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not args.datasets:
        p.error(f"--datasets: none given; allowed: fridge or <env>-<kind> with env in {', '.join(BRAX_ENVS)} "
                f"and kind in {', '.join(KINDS)}")
    if unknown := [d for d in args.datasets if d not in dataset_names()]:
        p.error(f"--datasets: unknown {', '.join(unknown)}; allowed: fridge or <env>-<kind> with env in "
                f"{', '.join(BRAX_ENVS)} and kind in {', '.join(KINDS)}")
    if not args.variants:
        p.error(f"--variants: none given; allowed: {', '.join(VARIANTS)}")
    if unknown := [v for v in args.variants if v not in VARIANTS]:
        p.error(f"--variants: unknown {', '.join(unknown)}; allowed: {', '.join(VARIANTS)}")
    for flag, values in (("--datasets", args.datasets), ("--variants", args.variants)):
        if len(set(values)) != len(values):
            p.error(f"{flag}: a name is given twice in {','.join(values)}")
    if args.seeds is not None and args.seeds < 1:
        p.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    args.seeds = args.seeds or (TINY_SEEDS if args.tiny else SCALES[args.scale].seeds)
    args.runs_dir = args.runs_dir or f"runs/offline_claims-{args.scale}{'-tiny' if args.tiny else ''}"
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    scale = SCALES[args.scale]
    plan = {}  # dataset -> [(variant, config | None, twin | None)]
    for dataset in args.datasets:
        settings = settings_of(scale, dataset, args.tiny)
        plan[dataset] = []
        for name in args.variants:
            twin = twin_of(name, dataset, settings, args.variants)
            config = variant_config(name, dataset, settings)
            if twin is None:
                check_folder(run_folder(args, dataset, name), config, args)
            plan[dataset].append((name, config, twin))
    header = runlog.benchmark_header("offline_claims", args.tiny, argv, {
        "scale": args.scale, "tiny": args.tiny, "datasets": args.datasets, "variants": args.variants,
        "seeds": args.seeds, "seed": args.seed, "runs_dir": args.runs_dir, "data_dir": args.data_dir,
        "settings": {dataset: dataclasses.asdict(settings_of(scale, dataset, args.tiny)) for dataset in args.datasets},
    })
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"offline_claims-{args.scale}-{header['machine'].get('platform', 'cpu')}" + ("-tiny" if args.tiny else "")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)
    result = {"header": header, "datasets": {}}
    for dataset in args.datasets:
        settings = settings_of(scale, dataset, args.tiny)
        shared = Shared(dataset, settings, args)
        d = result["datasets"][dataset] = {
            "rows": [], "departures": {name: departures(name, dataset, config) for name, config, twin in plan[dataset]
                                       if twin is None},
            "stage_departures": stage_departures(dataset, settings, args.scale, args.tiny, args.seeds),
        }
        finished = []
        for name, config, twin in plan[dataset]:
            folder = run_folder(args, dataset, name)
            if twin is not None:
                print(f"[offline_claims] {dataset}: {name} has the config of {twin} here: not trained twice",
                      file=sys.stderr, flush=True)
                d["rows"].append({"variant": name, "same_as": twin})
            else:
                reused = (folder / "summary.json").exists()
                status = "reused"
                if reused:
                    print(f"[offline_claims] {dataset}: {name} reused from {folder} (summary.json present)",
                          file=sys.stderr, flush=True)
                else:
                    print(f"[offline_claims] {dataset}: {name}: training {args.seeds} seeds into {folder}",
                          file=sys.stderr, flush=True)
                    status = train_variant(name, config, shared, args, folder)
                if status in ("reused", "trained"):
                    norm = shared.normalization()
                    d["rows"].append({**read_variant(name, folder, norm), "reused": reused})
                    finished.append(folder)
                else:
                    print(f"[offline_claims] {dataset}: {name}: {status}", file=sys.stderr, flush=True)
                    d["rows"].append({"variant": name, "error": status.splitlines()[0][:200]})
            if finished:
                norm = shared.normalization()
                d["normalization"] = {k: shared.stages["normalization"][k] for k in ("random", "high", "high_is")}
                d["data_policy_score"] = shared.data_policy_score()
                aggregate_dataset(d, finished, norm, json.loads((finished[0] / "config.json").read_text())["env"],
                                  args, out, stem, dataset)
            d["stages"] = dict(shared.stages)
            d.setdefault("data_policy_score", None)
            write(result, out, stem)  # after every variant: a long benchmark that stops loses nothing
    print(render(result))
    print(f"wrote {out / stem}.md/.json/.png", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
