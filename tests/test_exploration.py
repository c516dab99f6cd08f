"""Reward-free exploration: the maze, exploration that covers it, the dataset, relabelling, planning."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlx.envs as rlx_envs
from rlx.agents import ppo, sac
from rlx.core.config import ConfigError
from rlx.envs import maze
from rlx.explore import intrinsic as I
from rlx.explore import phases as P

pytestmark = pytest.mark.timeout(400)

EXPLORE_STEPS = 3_000  # one maze episode is 100 steps: 30 episodes, all from the start cell


@pytest.fixture(scope="module")
def four_rooms():
    return rlx_envs.make("rlx/PointMaze-v0", layout="four_rooms")


# ---- the maze ----------------------------------------------------------------------------------
def test_maze_walls_hold_and_the_reward_is_the_goal_reward_function(four_rooms):
    env, params = four_rooms
    reward_fn = env.goal_reward(0, params.goal_radius)
    data = P.random_dataset(jax.random.PRNGKey(0), env, params, 2_000)
    pos = np.asarray(env.positions(data.next_observations))
    cells = np.floor(pos).astype(int)
    assert not env.walls_np[cells[:, 1], cells[:, 0]].any(), "a position inside a wall"
    step = np.linalg.norm(np.asarray(env.positions(data.next_observations) - env.positions(data.observations)), axis=1)
    assert step[~np.asarray(data.timeouts)].max() <= params.max_speed * math.sqrt(2) + 1e-5
    np.testing.assert_array_equal(
        np.asarray(jax.vmap(reward_fn)(data.observations, data.actions, data.next_observations)), np.asarray(data.rewards)
    )
    # Truncation every 100 steps, never a termination.
    assert np.asarray(data.timeouts).sum() == 2_000 // params.max_steps_in_episode
    assert not np.asarray(data.terminals).any()


def test_a_goal_reaching_policy_collects_the_env_reward():
    env, params = rlx_envs.make("rlx/PointMaze-v0", layout="open", goal_index=0)
    goal = np.asarray(env.goals[0])

    def policy(obs, key):  # straight at the goal
        return jnp.clip(jnp.asarray(goal) - env.positions(obs), -1.0, 1.0)

    returns = P.evaluate_reward(policy, env, params, env.goal_reward(0), jax.random.PRNGKey(0), 2)
    # 4 cells at 0.25 per step: inside the 0.5 radius after 14 steps, then there for the rest.
    np.testing.assert_allclose(returns, [87.0, 87.0], atol=2.0)


def test_coverage_and_visitation_entropy_are_exact(four_rooms):
    env, _ = four_rooms
    free = int((~env.walls_np).sum())
    xy = np.array([[1.5, 1.5], [1.2, 1.7], [1.9, 1.1], [3.5, 2.5]])  # 3 visits in one cell, 1 in another
    obs = np.asarray(env.observe(jnp.asarray(xy, jnp.float32)))
    assert maze.coverage(env, obs) == pytest.approx(2 / free)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert maze.visitation_entropy(env, obs, normalized=False) == pytest.approx(h, rel=1e-6)
    assert maze.visitation_entropy(env, obs) == pytest.approx(h / math.log(free), rel=1e-6)
    assert maze.coverage(env, obs, resolution=2) == pytest.approx(4 / (4 * free))  # 4 distinct sub-cells
    assert maze.draw_frame(env, xy[0]).shape == (env.height * 16, env.width * 16, 3)


@pytest.mark.parametrize("kwargs, field", [({"goal_index": 7}, "goal_index"), ({"max_speed": 1.5}, "max_speed"),
                                           ({"layout": "nowhere"}, "layout"), ({"speed": 1}, "speed")])
def test_bad_maze_settings_are_refused(kwargs, field):
    with pytest.raises(ValueError, match=field):
        rlx_envs.make("rlx/PointMaze-v0", **kwargs)


# ---- exploration covers the maze better than a random policy -----------------------------------
def _explore_config(**kw):
    return P.exploration_config(total_steps=EXPLORE_STEPS, learning_starts=500, eval_every=500, eval_episodes=1,
                                hidden_sizes=(32, 32), batch_size=64, **kw)


TINY_MODULES = {
    "rnd": I.RND(hidden_sizes=(32, 32), embed_dim=16),
    "disagreement": I.Disagreement(hidden_sizes=(32, 32)),
    "apt": I.APT(representation="obs"),
}


# Visitation entropy (normalised) must beat the random policy's; disagreement's ties it at this
# budget (measured 0.537 against 0.541, with coverage 1.4x random's), so it gets a margin.
ENTROPY_MARGIN = {"rnd": 0.0, "apt": 0.0, "disagreement": -0.02}


@pytest.fixture(scope="module")
def tiny_rnd(four_rooms):
    """A tiny RND exploration config, its module and ``jax.jit(train)`` of it (compiled once, shared)."""
    from rlx.run import make_train

    env, params = four_rooms
    config = P.exploration_config(total_steps=300, learning_starts=100, eval_every=100, eval_episodes=1,
                                  hidden_sizes=(8,), batch_size=8)
    module = I.RND(hidden_sizes=(8,), embed_dim=4)
    return config, module, jax.jit(make_train(P.with_intrinsic(sac, module), config, env, params))


@pytest.fixture(scope="module")
def random_baseline(four_rooms):
    env, params = four_rooms
    data = P.random_dataset(jax.random.PRNGKey(0), env, params, EXPLORE_STEPS)
    obs = data.next_observations
    return maze.coverage(env, obs, 2), maze.visitation_entropy(env, obs, 2)


@pytest.fixture(scope="module")
def explored(four_rooms):
    env, params = four_rooms
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = P.explore(jax.random.PRNGKey(0), sac, _explore_config(), env, params, TINY_MODULES[name])
        return cache[name]

    return get


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(TINY_MODULES))
def test_intrinsic_exploration_covers_more_than_random(name, explored, random_baseline, four_rooms):
    env, _ = four_rooms
    result = explored(name)
    obs = result.dataset.next_observations
    cov, ent = maze.coverage(env, obs, 2), maze.visitation_entropy(env, obs, 2)
    random_cov, random_ent = random_baseline
    assert cov >= 1.3 * random_cov, (name, cov, random_cov)
    assert ent > random_ent + ENTROPY_MARGIN[name], (name, ent, random_ent)
    assert np.isfinite(result.metrics["intrinsic/bonus_mean"]).all()


def test_the_dataset_holds_every_step_in_order(explored, four_rooms):
    _, params = four_rooms
    data = explored("apt").dataset
    assert data.size == EXPLORE_STEPS
    obs, next_obs, timeouts = (np.asarray(x) for x in (data.observations, data.next_observations, data.timeouts))
    assert timeouts.sum() == EXPLORE_STEPS // params.max_steps_in_episode
    cont = ~timeouts[:-1]  # within an episode, s'_t is s_{t+1}
    np.testing.assert_array_equal(next_obs[:-1][cont], obs[1:][cont])


def test_relabelling_recomputes_every_reward_from_the_function(explored):
    data = explored("apt").dataset

    def reward_fn(s, a, s2):
        return jnp.sum(s2 * jnp.array([2.0, -1.0])) - 0.5 * jnp.sum(a**2) + s[0]

    labelled = P.relabel(data, reward_fn)
    s, a, s2 = (np.asarray(x, np.float64) for x in (data.observations, data.actions, data.next_observations))
    expected = s2 @ np.array([2.0, -1.0]) - 0.5 * (a**2).sum(1) + s[:, 0]
    np.testing.assert_allclose(np.asarray(labelled.rewards), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(labelled.timeouts), np.asarray(data.timeouts))
    with pytest.raises(ValueError, match="one scalar per transition"):
        P.relabel(data, lambda s, a, s2: s2)


@pytest.mark.timeout(300)
def test_plan_reaches_a_goal_chosen_after_exploration(explored, four_rooms):
    env, params = four_rooms
    data = explored("apt").dataset
    pos = np.asarray(env.positions(data.next_observations))
    dist = np.linalg.norm(pos - np.asarray(env.start), axis=1)
    goal = tuple(float(v) for v in pos[np.argsort(dist)[len(dist) // 2]])  # the median visited distance
    assert np.linalg.norm(np.array(goal) - np.asarray(env.start)) > 1.0
    reward_fn = env.goal_reward(goal)
    config = P.planning_config(hidden_sizes=(64, 64), batch_size=128)
    result = P.plan(data, reward_fn, jax.random.PRNGKey(1), config=config, num_updates=3_000, num_logs=3)
    returns = P.evaluate_reward(result.policy, env, params, reward_fn, jax.random.PRNGKey(2), 8)

    def uniform(obs, key):
        return jax.random.uniform(key, obs.shape[:-1] + (2,), minval=-1.0, maxval=1.0)

    random_returns = P.evaluate_reward(uniform, env, params, reward_fn, jax.random.PRNGKey(2), 8)
    assert returns.mean() >= 20.0 and returns.mean() > random_returns.mean() + 15.0, (returns, random_returns)


# ---- the protocol pieces -----------------------------------------------------------------------
def test_explore_refuses_settings_that_would_lose_data_before_compiling(four_rooms):
    env, params = four_rooms
    with pytest.raises(ConfigError, match="normalize_observations"):
        P.explore(jax.random.PRNGKey(0), sac, _explore_config(normalize_observations=True), env, params, I.APT())
    rounded = P.exploration_config(total_steps=2_200, learning_starts=500, eval_every=500)
    with pytest.raises(ConfigError, match="e.g. 2000"):
        P.explore(jax.random.PRNGKey(0), sac, rounded, env, params, I.APT())
    with pytest.raises(ConfigError, match="bonus_coef"):
        P.with_intrinsic(sac, I.APT(), bonus_coef=-1.0)


def test_finetuning_starts_from_the_pretrained_learner(four_rooms):
    env, params = four_rooms
    config = P.exploration_config(total_steps=200, learning_starts=100, eval_every=100, hidden_sizes=(8,), batch_size=8)
    pretrained = sac.init_learner(config, jnp.zeros((1, 2)), 2, jax.random.PRNGKey(7))
    wrapped = P.WithIntrinsic(sac, None, task_coef=1.0, bonus_coef=0.0, initial_learner=pretrained)
    state = wrapped.init(config, env, params, jax.random.PRNGKey(0))
    chex.assert_trees_all_equal(state.learner, pretrained)
    assert state.intrinsic is None and int(state.buffer.size) == 100  # warm-up on the task


@pytest.mark.timeout(200)
def test_a_bonus_plugs_into_ppo_without_touching_it():
    from rlx.run import make_train

    env, params = rlx_envs.make("gymnax/CartPole-v1")
    config = ppo.PPOConfig(total_steps=128, num_envs=2, num_steps=16, num_minibatches=2, update_epochs=1,
                           eval_every=64, eval_episodes=1, hidden_sizes=(16,))
    agent = P.with_intrinsic(ppo, I.RND(hidden_sizes=(16,), embed_dim=8), task_coef=1.0, bonus_coef=0.5)
    out = jax.jit(make_train(agent, config, env, params))(jax.random.PRNGKey(0))
    assert np.isfinite(np.asarray(out.metrics["intrinsic/bonus_mean"])).all()
    assert int(out.state.agent_state.intrinsic.state.obs_stats.count) == 128  # trained on every rollout row


@pytest.mark.timeout(300)
def test_pretrain_finetune_runs_end_to_end_from_the_pretrained_learner_for_the_fixed_budget(four_rooms):
    env, params = four_rooms
    small = dict(learning_starts=100, eval_every=100, eval_episodes=1, hidden_sizes=(8,), batch_size=8)
    pre_config = P.exploration_config(total_steps=200, **small)
    # (total_steps - learning_starts) is a whole number of eval blocks, so the budget is exact.
    fine_config = P.exploration_config(total_steps=200, **small)
    out = P.pretrain_finetune(jax.random.PRNGKey(0), sac, pre_config, fine_config, env, params,
                              I.APT(representation="obs", k=4))
    assert out.pretrain.dataset.observations.shape[0] == 200
    pre = out.pretrain.state.learner
    # The optimiser step counters carry on from the pretrained learner's (a fresh init restarts at 0).
    counts = lambda learner: [int(x) for x in jax.tree.leaves(learner)  # noqa: E731
                              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.integer) and jnp.ndim(x) == 0]
    steps = int(out.state.gradient_steps)
    assert steps > 0 and counts(pre) and all(c > 0 for c in counts(pre))
    assert counts(out.state.learner) == [c + steps for c in counts(pre)]
    assert int(out.state.env_steps) == 200 and int(np.asarray(out.metrics["step"])[-1]) == 200
    assert int(out.state.buffer.size) == 200 and out.state.intrinsic is None


@pytest.mark.timeout(200)
def test_explore_is_the_compiled_training_from_its_key_and_reports_progress(four_rooms, tiny_rnd, capsys):
    """``explore`` runs through rlx.run.run (chunked, with a bar): the same data as one
    ``jax.jit(train)(key)``, bit for bit; the logged loss means agree up to float rounding (the
    two programs fuse their reductions differently)."""
    env, params = four_rooms
    config, module, train = tiny_rnd
    result = P.explore(jax.random.PRNGKey(3), sac, config, env, params, module)
    assert "step" in capsys.readouterr().err  # the progress bar
    out = train(jax.random.PRNGKey(3))
    reference = P.buffer_dataset(out.state.agent_state.buffer)
    for name, a, b in zip(reference._fields, reference, result.dataset, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)
    for name, values in out.metrics.items():
        np.testing.assert_allclose(np.asarray(values), result.metrics[name], rtol=1e-5, atol=1e-7, err_msg=name)
    planned = P.plan(result.dataset, env.goal_reward(0), jax.random.PRNGKey(1), config=P.planning_config(
        hidden_sizes=(8,), batch_size=8), num_updates=20, num_logs=2)
    assert "offline updates: 100%" in capsys.readouterr().err  # the planning bar, fed after each stretch
    assert planned.metrics["loss/critic"].shape == (2,)


# ---- several seeds at once ---------------------------------------------------------------------
def _run_of(tree, i):
    """Run i of a pytree with a leading run axis."""
    return jax.tree.map(lambda x: x[i], tree)


def _tiny_explore_config():
    return P.exploration_config(total_steps=300, learning_starts=100, eval_every=100, eval_episodes=1,
                                hidden_sizes=(8,), batch_size=8)


@pytest.mark.timeout(150)
def test_explore_with_seeds_is_each_seed_s_own_run(four_rooms, tiny_rnd):
    """Seed i of ``explore(..., num_seeds=2)`` is the run from ``run_keys(key, 2)[i]``, as rlx.run's
    vmapped seeds are: the warm-up bit for bit, then within float32 rounding (a vmapped matrix
    product may round the policy's action differently in the last bit)."""
    env, params = four_rooms
    (config, module, single), key = tiny_rnd, jax.random.PRNGKey(3)
    batched = P.explore(key, sac, config, env, params, module, num_seeds=2, progress=False)
    assert batched.dataset.observations.shape == (2, 300, 2) and batched.dataset.rewards.shape == (2, 300)
    assert batched.metrics["step"].shape == (2, 2) and int(batched.state.env_steps[1]) == 300
    # explore(k) is jax.jit(train)(k) bit for bit (test above): one compiled reference for both keys.
    keys = P.run_keys(key, 2)
    np.testing.assert_array_equal(np.asarray(keys), np.asarray(jax.random.split(key, 2)))
    for i in range(2):
        one = single(keys[i])
        reference = P.buffer_dataset(one.state.agent_state.buffer)
        for name, a, b in zip(reference._fields, reference, batched.dataset, strict=True):
            a, b = np.asarray(a), np.asarray(b[i])
            np.testing.assert_array_equal(a[:100], b[:100], err_msg=f"seed {i} {name}: warm-up")
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=f"seed {i} {name}")
        for name in ("rewards", "terminals", "timeouts"):
            np.testing.assert_array_equal(np.asarray(getattr(reference, name)),
                                          np.asarray(getattr(batched.dataset, name)[i]), err_msg=name)
        np.testing.assert_allclose(np.asarray(one.metrics["intrinsic/bonus_mean"]),
                                   batched.metrics["intrinsic/bonus_mean"][i], rtol=1e-4, atol=1e-6)
    # The random baseline the same way, bit for bit (no learner in the loop).
    randoms = P.random_dataset(key, env, params, 200, num_seeds=2)
    for i in range(2):
        chex.assert_trees_all_equal(_run_of(randoms, i), P.random_dataset(keys[i], env, params, 200))


@pytest.mark.timeout(150)
def test_batched_planning_is_each_run_s_own_planning(four_rooms):
    env, params = four_rooms
    data = P.random_dataset(jax.random.PRNGKey(0), env, params, 200, num_seeds=2)
    goal = jnp.asarray(env.goals[0])

    def reward_fn(s, a, s2):  # dense, so the returns below differ from run to run
        return -jnp.linalg.norm(env.positions(s2) - goal)

    config = P.planning_config(hidden_sizes=(8, 8), batch_size=16)
    keys = P.run_keys(jax.random.PRNGKey(1), 2)
    batched = P.plan(data, reward_fn, keys, config=config, num_updates=40, num_logs=2, batched=True, progress=False)
    assert batched.num_runs == 2 and batched.metrics["loss/critic"].shape == (2, 2)
    returns = P.evaluate_plan(batched, env, params, reward_fn, jax.random.PRNGKey(2), 3)
    assert returns.shape == (2, 3)
    for i in range(2):
        one = P.plan(_run_of(data, i), reward_fn, keys[i], config=config, num_updates=40, num_logs=2,
                     progress=False)
        chex.assert_trees_all_close(_run_of(batched.learner, i), one.learner, rtol=1e-5, atol=1e-6)
        for name, values in one.metrics.items():
            np.testing.assert_allclose(batched.metrics[name][i], values, rtol=1e-4, atol=1e-6, err_msg=name)
        own = P.evaluate_reward(batched.policy_of(i), env, params, reward_fn, jax.random.PRNGKey(2), 3)
        np.testing.assert_allclose(returns[i], own, rtol=1e-5)
    assert not np.allclose(returns[0], returns[1])
    obs = jnp.zeros((2, 5, 2))  # the batched policy: every run on its own observations
    np.testing.assert_allclose(np.asarray(batched.policy(obs, keys))[1],
                               np.asarray(batched.policy_of(1)(obs[1], keys[1])), rtol=1e-6, atol=1e-6)
    with pytest.raises(IndexError, match="0..1"):
        batched.policy_of(2)


@pytest.mark.timeout(60)
def test_bad_seed_counts_and_batches_are_refused_before_compiling(four_rooms, monkeypatch):
    import rlx.run.driver

    def compiled(*args, **kwargs):
        raise AssertionError("compiled before the inputs were checked")

    monkeypatch.setattr(rlx.run.driver, "run", compiled)
    monkeypatch.setattr(P, "_offline_program", compiled)
    env, params = four_rooms
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match=r"num_seeds=.*None .*int >= 1"):
            P.explore(jax.random.PRNGKey(0), sac, _tiny_explore_config(), env, params, I.APT(), num_seeds=bad)
    with pytest.raises(ConfigError, match="num_seeds=0"):
        P.random_dataset(jax.random.PRNGKey(0), env, params, 10, num_seeds=0)
    data = jax.tree.map(lambda x: jnp.stack([x, x]), P.random_dataset(jax.random.PRNGKey(0), env, params, 50))
    config = P.planning_config(hidden_sizes=(8,), batch_size=8)

    def plan(data, key, **kw):
        return P.plan(data, env.goal_reward(0), key, config=config, num_updates=4, num_logs=2, progress=False, **kw)

    with pytest.raises(ConfigError, match=r"leading axis N.*'key': 3"):
        plan(data, P.run_keys(jax.random.PRNGKey(0), 3), batched=True)
    with pytest.raises(ConfigError, match=r"one key per run"):
        plan(data, jax.random.PRNGKey(0), batched=True)
    with pytest.raises(ConfigError, match=r"batch of keys.*batched=True"):
        plan(_run_of(data, 0), P.run_keys(jax.random.PRNGKey(0), 2))
    ragged = data._replace(rewards=data.rewards[:1])
    with pytest.raises(ConfigError, match=r"'rewards': 1"):
        P.offline_learn(sac, config, ragged, P.run_keys(jax.random.PRNGKey(0), 2), 4, 2, batched=True)
    with pytest.raises(ConfigError, match="batched=1 must be True or False"):
        P.offline_learn(sac, config, data, P.run_keys(jax.random.PRNGKey(0), 2), 4, 2, batched=1)
    with pytest.raises(ConfigError, match="smaller than batch_size"):
        P.offline_learn(sac, P.planning_config(batch_size=64), data, P.run_keys(jax.random.PRNGKey(0), 2), 4, 2,
                        batched=True)


@pytest.mark.timeout(60)
def test_maze_benchmark_scales_and_refusals(capsys):
    """benchmarks/exploration_maze.py: the cpu scale is what its results were measured with, and
    the paper scale is URLB's pretraining budget and sizes, with a buffer that keeps every step."""
    from _benchmarks import load_benchmark

    bench = load_benchmark("exploration_maze")
    cpu = bench.scale_of(bench.parse_args([]))
    assert (cpu.steps, cpu.hidden, cpu.batch_size, cpu.seeds, cpu.plan_updates) == (20_000, (128, 128), 128, 5, 20_000)
    config = bench.explorer_config(cpu)
    assert config.total_steps == 20_000 and config.buffer_capacity >= 20_000
    paper = bench.scale_of(bench.parse_args(["--scale", "paper"]))
    assert (paper.steps, paper.hidden, paper.batch_size, paper.seeds) == (2_004_000, (1024, 1024), 1_024, 10)
    config = bench.explorer_config(paper)
    assert config.buffer_capacity == 2_004_000 and config.actor_lr == config.critic_lr == 1e-4
    assert config.learning_starts == 4_000 and config.warmup_env_steps == 4_000
    # overrides, rounded up to whole coverage blocks, down to whole logged stretches
    small = bench.scale_of(bench.parse_args(["--scale", "paper", "--steps", "250000", "--seeds", "3",
                                             "--plan-updates", "1003"]))
    assert (small.steps, small.seeds, small.plan_updates, small.hidden) == (304_000, 3, 1_000, (1024, 1024))
    for bad, why in ((["--scale", "paper", "--quick"], "does not go with --scale paper"),
                     (["--modules", "rnd,icm"], "unknown ['icm']"), (["--seeds", "0"], "--seeds 0")):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
        assert why in capsys.readouterr().err
