"""Data-parallel training of one agent on 8 CPU devices equals the same computation on one.

The sharded programs need ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before jax
starts, so they run in a child process (tests/_eight_devices.py, shared with ``test_mesh.py``),
which calls ``_child`` below. It trains SAC (with observation normalization), DSAC-T and PPO
data-parallel with ``jax.shard_map`` over 8 devices and, for each, the single-device reference: the same
per-device computation ``jax.vmap``-ed over a device axis with the same keys, whose collectives
(``pmean``, ``psum``, ``all_gather``) mean the same thing. It also checks the first gradient
step against the gradient of the full batch computed directly, and saves everything for the
tests below. The other tests run here, on one device.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _eight_devices import NUM_DEVICES

XDIST_GROUP = "eight_devices"  # one xdist worker runs this file and test_mesh.py (tests/_xdist_groups.py)

TOL = {"rtol": 1e-4, "atol": 1e-4}


# ---------------------------------------------------------------------------------------------
# 8 devices (child process)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def child(eight_devices):
    """What the 8-device child (tests/_eight_devices.py) saved from ``_child`` below."""
    out = eight_devices / "data_parallel"
    info = json.loads((out / "info.json").read_text())
    arrays = dict(np.load(out / "arrays.npz"))
    return info, arrays, out


def _group(arrays, prefix):
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def _assert_close(a, b):
    assert a.keys() == b.keys() and a
    for k in a:
        np.testing.assert_allclose(a[k], b[k], err_msg=k, equal_nan=True, **TOL)


@pytest.mark.timeout(590)
def test_child_sees_eight_devices(child):
    info, _, _ = child
    assert info["device_count"] == NUM_DEVICES


@pytest.mark.timeout(590)
@pytest.mark.parametrize("agent", ["sac", "dsac_t", "ppo"])
def test_sharded_training_equals_single_device_reference(child, agent):
    _, arrays, _ = child
    sharded, reference = _group(arrays, f"{agent}/sharded/"), _group(arrays, f"{agent}/reference/")
    _assert_close(sharded, reference)
    assert np.all(np.isfinite(sharded["eval/return_mean"]))


@pytest.mark.timeout(590)
@pytest.mark.parametrize("agent", ["sac", "dsac_t", "ppo"])
def test_parameters_stay_replicated_and_data_differs(child, agent):
    info, _, _ = child
    checks = info[f"{agent}/replication"]
    assert checks["param_leaves"] > 0
    assert checks["max_param_spread"] == 0.0  # bit-identical on all 8 devices
    assert checks["params_changed"]  # ... and they did learn
    assert checks["obs_differ_across_devices"]  # each device steps its own environments
    assert checks["state_devices"] == NUM_DEVICES  # the state really lives on 8 devices


@pytest.mark.timeout(590)
def test_sac_observation_statistics_are_global(child):
    info, _, _ = child
    checks = info["sac/replication"]
    assert checks["obs_stats_spread"] == 0.0  # every device holds the same statistics
    # ... the statistics of all 8 devices' observations: reset (8 x 1) + one per env step
    assert checks["obs_stats_count"] == 8 + info["sac/env_steps"]


@pytest.mark.timeout(590)
def test_first_gradient_step_equals_full_batch_gradient(child):
    info, arrays, _ = child
    np.testing.assert_allclose(info["grad/sharded_loss"], info["grad/full_loss"], rtol=1e-5)
    _assert_close(_group(arrays, "grad/sharded/"), _group(arrays, "grad/full/"))
    assert info["grad/params_moved"]


@pytest.mark.timeout(590)
def test_running_stats_of_shards_equal_full_batch(child):
    _, arrays, _ = child
    _assert_close(_group(arrays, "stats/sharded/"), _group(arrays, "stats/full/"))


@pytest.mark.timeout(590)
@pytest.mark.parametrize("agent", ["dsac_t", "ppo"])
def test_program_averages_gradients_across_devices(child, agent):
    info, _, _ = child
    assert "all-reduce" in info[f"{agent}/collectives"]  # pmean of gradients, psum of counts
    assert "all-gather" in info[f"{agent}/collectives"]  # evaluation returns, the init key


@pytest.mark.timeout(590)
def test_driver_trains_data_parallel_and_resumes(child):
    info, arrays, out = child
    config = json.loads((out / "run" / "config.json").read_text())
    assert config["runs_layout"] == {
        "mode": "data_parallel", "devices": 8, "processes": 1, "num_envs_per_device": 1,
        "batch_size_per_device": 4, "buffer_size_per_device": 75, "eval_episodes_per_device": 1,
    }
    rows = [json.loads(x) for x in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(arrays["sac/reference/step"])  # global env steps
    # Resumed from the checkpoint after block 1 (every device's slice), the run ends as the
    # one that never stopped.
    assert info["resumed_start_evaluation"] == 1
    assert "was trained data-parallel" in info["eval_refusal"]  # `rlx eval` refuses, clearly
    _assert_close(_group(arrays, "sac/resumed/"), _group(arrays, "sac/reference/"))


# ---------------------------------------------------------------------------------------------
# One device (this process)
# ---------------------------------------------------------------------------------------------
def _tiny_sac(**changes):
    from rlx.agents import sac

    base = dict(total_steps=600, num_envs=8, learning_starts=100, eval_every=250, eval_episodes=4,
                batch_size=32, hidden_sizes=(16,))
    return sac.SACConfig(**{**base, **changes})


@pytest.mark.timeout(120)
def test_single_device_programs_have_no_collectives():
    """Without data-parallel training the programs are what they were: no cross-device ops."""
    import jax

    from rlx import envs
    from rlx.agents import ppo, sac
    from rlx.run import make_train

    key = jax.random.PRNGKey(0)
    env, params = envs.make("gymnax/Pendulum-v1", max_steps_in_episode=50)
    sac_text = str(jax.make_jaxpr(make_train(sac, _tiny_sac(normalize_observations=True), env, params))(key))
    cart, cart_params = envs.make("gymnax/CartPole-v1")
    tiny_ppo = ppo.PPOConfig(total_steps=256, num_envs=8, num_steps=8, num_minibatches=2, update_epochs=1,
                             eval_every=128, eval_episodes=2, hidden_sizes=(8,))
    ppo_text = str(jax.make_jaxpr(make_train(ppo, tiny_ppo, cart, cart_params))(key))
    for text in (sac_text, ppo_text):
        for primitive in ("psum", "pmean", "all_gather", "all_reduce", "axis_index"):
            assert primitive not in text


def test_shard_config_splits_the_work():
    from rlx.core.parallel import shard_config

    config = _tiny_sac(normalize_observations=True)
    local = shard_config(config, 8)
    assert (local.num_envs, local.batch_size, local.eval_episodes) == (1, 4, 1)
    assert local.buffer_capacity == 75  # 600 transitions over 8 devices
    assert local.warmup_iterations == config.warmup_iterations == 13  # same warm-up length
    assert local.env_steps_per_iteration * 8 == config.env_steps_per_iteration
    assert shard_config(config, 1) is config


def test_shard_config_refuses_uneven_splits_naming_the_field():
    from rlx.agents import ppo
    from rlx.core.config import ConfigError
    from rlx.core.parallel import shard_config

    with pytest.raises(ConfigError, match=r"num_envs=6 must be a multiple of the 4 devices"):
        shard_config(_tiny_sac(num_envs=6), 4)
    with pytest.raises(ConfigError, match=r"batch_size=30 must be a multiple of the 4 devices"):
        shard_config(_tiny_sac(batch_size=30), 4)
    # PPO: 8 envs x 8 steps = 64 rows in 4 minibatches is fine globally, but each of 8 devices
    # holds 8 rows, which 16 minibatches cannot split.
    cfg = ppo.PPOConfig(num_envs=8, num_steps=8, num_minibatches=16)
    with pytest.raises(ConfigError, match=r"(?s)per-device config.*num_minibatches=16 must divide"):
        shard_config(cfg, 8)


def test_data_parallel_refusals_before_compiling():
    from rlx import envs
    from rlx.agents import gigpo, sac
    from rlx.core.config import ConfigError
    from rlx.run import run
    from rlx.run.mesh import make_data_parallel_train

    env, params = envs.make("gymnax/Pendulum-v1")
    with pytest.raises(ValueError, match="num_seeds must be 1"):
        run(sac, _tiny_sac(), env, params, num_seeds=2, data_parallel=True, progress=False)
    with pytest.raises(ConfigError, match=r"agent gigpo has no data-parallel mode; agents with one: .*sac"):
        make_data_parallel_train(gigpo, gigpo.Config(), env, params)
    with pytest.raises(ValueError, match="devices must be between 1 and the 1 visible"):
        make_data_parallel_train(sac, _tiny_sac(), env, params, devices=2)


def test_collective_helpers_under_vmap_are_global_batch_statistics():
    """The helpers' meaning, with vmap's named axis standing in for 4 devices."""
    import jax
    import jax.numpy as jnp
    import optax

    from rlx.core import parallel
    from rlx.core.running_stats import init_running_stats, update_running_stats

    x = jax.random.normal(jax.random.PRNGKey(1), (4, 6, 3)) * 3.0 + 5.0
    flat = x.reshape(24, 3)

    def per_device(shard):
        with parallel.data_parallel("d"):
            return parallel.standardize(shard[:, 0]), update_running_stats(init_running_stats((3,)), shard)

    z, stats = jax.jit(jax.vmap(per_device, axis_name="d"))(x)
    col = flat[:, 0]
    np.testing.assert_allclose(z.reshape(-1), (col - col.mean()) / (col.std() + 1e-8), rtol=1e-5, atol=1e-5)
    full = update_running_stats(init_running_stats((3,)), flat)
    for got, want in ((stats.mean, full.mean), (stats.var, full.var), (stats.count, full.count)):
        np.testing.assert_allclose(got, jnp.broadcast_to(want, got.shape), rtol=1e-5, atol=1e-5)

    # Averaged gradients: one Adam step on each device's half-batch mean = on the full batch.
    w = jnp.ones(3)

    def loss(w, rows):
        return jnp.mean((rows @ w - 1.0) ** 2)

    def step(rows):
        with parallel.data_parallel("d"):
            opt = parallel.averaged_gradients(optax.adam(0.1))
            updates, _ = opt.update(jax.grad(loss)(w, rows), opt.init(w), w)
        return optax.apply_updates(w, updates)

    sharded = jax.jit(jax.vmap(step, axis_name="d"))(x)
    opt = optax.adam(0.1)
    want = optax.apply_updates(w, opt.update(jax.grad(loss)(w, flat), opt.init(w), w)[0])
    np.testing.assert_allclose(sharded, jnp.broadcast_to(want, sharded.shape), rtol=1e-6)
    assert parallel.averaged_gradients(opt) is opt  # no axis: the optimizer itself

    # Parameter initialisation: device 0's key everywhere (legacy and typed keys).
    def replicated(k):
        with parallel.data_parallel("d"):
            return parallel.replicated_key(k)

    for keys in (jax.random.split(jax.random.PRNGKey(0), 4), jax.random.split(jax.random.key(0), 4)):
        same = jax.vmap(replicated, axis_name="d")(keys)
        raw = jax.random.key_data if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key) else np.asarray
        np.testing.assert_array_equal(raw(same), np.broadcast_to(raw(keys[0]), raw(same).shape))


def test_cli_passes_data_parallel(monkeypatch, tmp_path):
    import rlx.run
    from rlx import cli

    seen = {}
    no_cache = ["--no-compile-cache"]  # leave the persistent compilation cache alone

    def fake_run(*args, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(rlx.run, "run", fake_run)
    with pytest.raises(SystemExit):
        cli.main(["train", "sac", "--data-parallel", "--out", str(tmp_path / "x"), "--no-progress", *no_cache])
    assert seen["data_parallel"] is True
    argv = ["train", "sac", "--data-parallel", "--num-seeds", "2", "--out", str(tmp_path / "y"), *no_cache]
    assert cli.main(argv) == 2
    with pytest.raises(SystemExit):  # agents without a data-parallel mode have no such flag
        cli.main(["train", "gigpo", "--data-parallel"])


# ---------------------------------------------------------------------------------------------
# The child process
# ---------------------------------------------------------------------------------------------
def _spread(leaves):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(x)[:1]))) for x in leaves)


def _replication(state, learner_of, obs_of):
    import jax
    import optax

    learner = learner_of(state)
    leaves = jax.tree.leaves(learner)
    adam = [s for s in jax.tree.leaves(learner, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
            if isinstance(s, optax.ScaleByAdamState)]
    obs = np.asarray(obs_of(state))
    return {
        "param_leaves": len(leaves),
        "max_param_spread": _spread(leaves),
        # every optimizer took steps with non-zero gradients, so the parameters moved
        "params_changed": bool(adam) and all(
            int(np.asarray(s.count)[0]) > 0 and max(float(np.max(np.abs(m))) for m in jax.tree.leaves(s.mu)) > 0
            for s in adam
        ),
        "obs_differ_across_devices": bool(np.any(np.abs(obs - obs[:1]) > 1e-6)),
        "state_devices": len(leaves[0].sharding.device_set),
    }


def _child(out: Path) -> None:
    import jax
    import jax.numpy as jnp
    import optax
    from jax.sharding import PartitionSpec as P

    from rlx import envs
    from rlx.agents import dsac_t, ppo, sac
    from rlx.core import parallel
    from rlx.core.running_stats import init_running_stats, update_running_stats
    from rlx.run import CheckpointError, evaluate_run, resume_run, run, seed_keys
    from rlx.run.mesh import (
        DATA_AXIS,
        data_parallel_mesh,
        hlo_collectives,
        make_data_parallel_train,
    )

    info = {"device_count": jax.device_count()}
    saved = {}

    def save(prefix, metrics):
        for k, v in jax.device_get(metrics).items():
            saved[f"{prefix}/{k}"] = np.asarray(v)

    key = seed_keys(0, 1)[0]  # the key of `rlx train --seed 0`
    pendulum, pendulum_params = envs.make("gymnax/Pendulum-v1", max_steps_in_episode=50)

    # SAC with observation normalization: the chunked driver (what `rlx train --data-parallel`
    # runs, with its checkpoints) against the single-device reference.
    sac_cfg = sac.SACConfig(total_steps=600, num_envs=8, learning_starts=100, eval_every=250, eval_episodes=4,
                            batch_size=32, hidden_sizes=(16,), normalize_observations=True)
    train = make_data_parallel_train(sac, sac_cfg, pendulum, pendulum_params)
    reference = jax.jit(train.reference)(key)
    save("sac/reference", reference.metrics)
    result = run(sac, sac_cfg, "gymnax/Pendulum-v1", env_kwargs={"max_steps_in_episode": 50}, data_parallel=True,
                 out_dir=out / "run", progress=False, checkpoint_every=1)
    save("sac/sharded", {k: v[0] for k, v in result.metrics.items()})  # SAC's sharded run is the driver's
    state = result.state.agent_state
    checks = _replication(result.state, lambda s: s.agent_state.learner, lambda s: s.agent_state.obs)
    stats = state.env_state.obs_stats
    checks["obs_stats_spread"] = _spread(jax.tree.leaves(stats))
    checks["obs_stats_count"] = float(np.asarray(stats.count)[0])
    info["sac/replication"] = checks
    info["sac/env_steps"] = int(np.asarray(result.metrics["step"])[0, -1])
    # As if stopped after the first of its two evaluation blocks: resume from checkpoint 1.
    shutil.rmtree(out / "run" / "checkpoints" / "2")
    resumed = resume_run(out / "run", progress=False)
    try:
        evaluate_run(out / "run", episodes=2)
    except CheckpointError as err:
        info["eval_refusal"] = str(err)
    info["resumed_start_evaluation"] = resumed.start_evaluation
    save("sac/resumed", {k: v[0] for k, v in resumed.metrics.items()})

    # DSAC-T (its std average b is a batch statistic too) and PPO, one-shot programs.
    dsac_cfg = dsac_t.DSACTConfig(total_steps=500, num_envs=8, learning_starts=100, eval_every=200,
                                  eval_episodes=8, batch_size=16, hidden_sizes=(16,))
    pole, pole_params = envs.make("gymnax/CartPole-v1")
    ppo_cfg = ppo.PPOConfig(total_steps=512, num_envs=8, num_steps=8, num_minibatches=2, update_epochs=2,
                            eval_every=256, eval_episodes=8, hidden_sizes=(8,))
    for name, agent, cfg, env, params, learner_of in (
        ("dsac_t", dsac_t, dsac_cfg, pendulum, pendulum_params, lambda s: s.agent_state.learner),
        ("ppo", ppo, ppo_cfg, pole, pole_params, lambda s: (s.agent_state.params, s.agent_state.opt_state)),
    ):
        train = make_data_parallel_train(agent, cfg, env, params)
        compiled = jax.jit(train).lower(key).compile()
        info[f"{name}/collectives"] = hlo_collectives(compiled)
        sharded = compiled(key)
        save(f"{name}/sharded", sharded.metrics)
        save(f"{name}/reference", jax.jit(train.reference)(key).metrics)
        info[f"{name}/replication"] = _replication(sharded.state, learner_of, lambda s: s.agent_state.obs)

    # One SAC critic step on a global batch of 64 split over 8 devices vs the full batch.
    mesh = data_parallel_mesh()
    critic = sac.twin_critic(sac_cfg)
    k_obs, k_act, k_y, k_init = jax.random.split(jax.random.PRNGKey(3), 4)
    obs = jax.random.normal(k_obs, (64, 3))
    action = jax.random.uniform(k_act, (64, 1), minval=-1.0, maxval=1.0)
    target = jax.random.normal(k_y, (64,)) * 5.0
    params0 = critic.init(k_init, obs[:1], action[:1])
    batch = sac.Transition(obs, action, target, obs, jnp.zeros(64), jnp.zeros(64))

    def critic_step(batch, target):
        with parallel.data_parallel(DATA_AXIS):
            opt = sac.optimizers(sac_cfg)[1]
            (loss, _), grads = jax.value_and_grad(sac.critic_loss, has_aux=True)(params0, critic, batch, target)
            updates, _ = opt.update(grads, opt.init(params0), params0)
            return optax.apply_updates(params0, updates), parallel.mean(loss)

    step = jax.shard_map(critic_step, mesh=mesh, in_specs=P(DATA_AXIS), out_specs=P(), check_vma=False)
    new_sharded, loss_sharded = jax.jit(step)(batch, target)
    opt = sac.optimizers(sac_cfg)[1]
    (loss_full, _), grads_full = jax.value_and_grad(sac.critic_loss, has_aux=True)(params0, critic, batch, target)
    new_full = optax.apply_updates(params0, opt.update(grads_full, opt.init(params0), params0)[0])
    info["grad/sharded_loss"], info["grad/full_loss"] = float(loss_sharded), float(loss_full)
    for i, (a, b) in enumerate(zip(jax.tree.leaves(new_sharded), jax.tree.leaves(new_full), strict=True)):
        saved[f"grad/sharded/{i}"], saved[f"grad/full/{i}"] = np.asarray(a), np.asarray(b)
    info["grad/params_moved"] = not np.allclose(jax.tree.leaves(new_full)[0], jax.tree.leaves(params0)[0])

    # Running observation statistics merged over the shards vs the full batch.
    rows = jax.random.normal(jax.random.PRNGKey(4), (64, 3)) * 2.0 + 10.0

    def merge(rows):
        with parallel.data_parallel(DATA_AXIS):
            return update_running_stats(update_running_stats(init_running_stats((3,)), rows[:4]), rows[4:])

    # Device d gets rows 8d .. 8d+7 and merges its first four, then its last four.
    got = jax.jit(jax.shard_map(merge, mesh=mesh, in_specs=P(DATA_AXIS), out_specs=P(), check_vma=False))(rows)
    shards = rows.reshape(8, 8, 3)
    want = update_running_stats(
        update_running_stats(init_running_stats((3,)), shards[:, :4].reshape(32, 3)), shards[:, 4:].reshape(32, 3)
    )
    for field in ("mean", "var", "count"):
        saved[f"stats/sharded/{field}"] = np.asarray(getattr(got, field))
        saved[f"stats/full/{field}"] = np.asarray(getattr(want, field))

    (out / "info.json").write_text(json.dumps(info))
    np.savez(out / "arrays.npz", **saved)
