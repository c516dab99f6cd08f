"""Dataset collection (D4RL recipe) on Pendulum with a short SAC run: random < medium < expert,
medium-replay is the whole training history in order, medium-expert is half and half, datasets
written to disk load back identical; the rollout layout (terminals apart from timeouts, true
last observations, contiguous env streams) on a small env with known dynamics; the command line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces

from rlx.buffers import dataset as ds
from rlx.core.config import ConfigError
from rlx.run import collect as C
from rlx.run.logging import OutputDirError

pytestmark = pytest.mark.timeout(400)

ENV = "gymnax/Pendulum-v1"
SIZE = 8_000  # 10 envs x 800 steps: four whole 200-step episodes per env
NUM_ENVS = 10


@pytest.fixture(scope="module")
def ref():
    # 64x64 SAC solves Pendulum within 10k steps (tests/test_sac_learning.py); evaluations
    # every 500 steps give the medium pick a fine grid.
    return C.train_reference_policies(
        ENV, seed=0, expert_steps=10_000, config={"hidden_sizes": (64, 64), "eval_every": 500},
        reference_episodes=64, progress=False,
    )


@pytest.fixture(scope="module")
def data(ref):
    return {k: C.collect_dataset(ref, k, SIZE, num_envs=NUM_ENVS, progress=False) for k in ("random", "medium", "expert")}


def test_kinds_are_ordered_random_medium_expert(ref, data):
    assert ref.random_return < ref.medium_return < ref.expert_return, (ref.random_return, ref.medium_return, ref.expert_return)
    assert ref.expert_return > -300, f"the expert should solve Pendulum, eval curve {ref.eval_returns.round()}"
    medium_score = ds.normalized_score(ref.medium_return, random_return=ref.random_return, expert_return=ref.expert_return)
    assert 5 < medium_score < 75, f"medium should be about a third of the way, got a normalized score of {medium_score:.1f}"
    means = {}
    for kind, (dataset, info) in data.items():
        returns = ds.episode_returns(dataset)
        assert returns.size == 40 and dataset.size == SIZE
        means[kind] = returns.mean()
        assert info.kind == kind and info.policy_return == ref.policy_return(kind)
        assert (info.random_return, info.expert_return) == (ref.random_return, ref.expert_return)
    assert means["random"] < means["medium"] < means["expert"], means
    assert ds.normalized_score(means["expert"], data["expert"][1]) > 80


def test_random_actions_are_uniform(data):
    actions = data["random"][0].actions
    assert actions.min() >= -1 and actions.max() <= 1
    assert abs(actions.mean()) < 0.05 and abs(actions.std() - 1 / np.sqrt(3)) < 0.03


def test_medium_is_where_training_reached_a_third(ref):
    target = ref.medium_target
    first = int(np.flatnonzero(ref.eval_returns >= target)[0])
    assert ref.medium_index <= first, "medium must be no later than the first evaluation reaching the target"
    assert ref.medium_index == C.pick_medium(ref.eval_returns, target)
    assert ref.medium_step < ref.expert_steps == 10_000


def test_pick_medium_known_values():
    # first to reach -900 is -300 (index 3); among indices 0..3, -950 is closest
    assert C.pick_medium(np.array([-1500.0, -1200, -950, -300, -200, -940]), -900.0) == 2
    assert C.pick_medium(np.array([-1500.0, -100, -900]), -900.0) == 0  # a jump: the earlier one is closer
    assert C.pick_medium(np.array([-1500.0, -1400]), -900.0) == 1  # never reached: the closest of all


def test_medium_replay_holds_the_whole_history_in_order(ref):
    history, info = C.collect_dataset(ref, "medium-replay", progress=False)
    n = ref.medium_step
    assert history.size == info.size == n == info.medium_step  # every env step up to medium, warm-up included
    ends = np.logical_or(history.terminals, history.timeouts)
    # one training env: one stream; Pendulum truncates every 200 steps, and the stream is cut at n
    expected = np.zeros(n, bool)
    expected[199::200] = True
    expected[-1] = True
    np.testing.assert_array_equal(ends, expected)
    assert not history.terminals.any()
    chained = ~ends[:-1]
    np.testing.assert_array_equal(history.next_observations[:-1][chained], history.observations[1:][chained])
    assert not np.allclose(history.next_observations[199], history.observations[200])  # true last obs, not the reset
    warmup = history.actions[: ref.config.learning_starts]
    assert abs(warmup.std() - 1 / np.sqrt(3)) < 0.05  # uniform warm-up actions come first


def test_medium_expert_is_half_medium_half_expert(ref):
    mixed, info = C.collect_dataset(ref, "medium-expert", SIZE, num_envs=NUM_ENVS, progress=False)
    half = SIZE // 2
    medium, _ = C.collect_dataset(ref, "medium", half, num_envs=NUM_ENVS, progress=False)
    expert, _ = C.collect_dataset(ref, "expert", half, num_envs=NUM_ENVS, progress=False)
    for key in ds.KEYS:
        np.testing.assert_array_equal(getattr(mixed, key)[:half], getattr(medium, key))
        np.testing.assert_array_equal(getattr(mixed, key)[half:], getattr(expert, key))
    assert info.policy_return == pytest.approx(0.5 * (ref.medium_return + ref.expert_return))


def test_collected_dataset_written_to_disk_loads_back(tmp_path, ref):
    out = tmp_path / "pendulum-medium"
    written, info = C.collect_dataset(ref, "medium", SIZE // 2, out=out, num_envs=NUM_ENVS, progress=False)
    again, _ = C.collect_dataset(ref, "medium", SIZE // 2, num_envs=NUM_ENVS, progress=False)
    loaded, loaded_info = ds.load(out)
    for key in ds.KEYS:  # the same seed collects the same transitions
        np.testing.assert_array_equal(np.asarray(getattr(loaded, key)), getattr(again, key))
        np.testing.assert_array_equal(np.asarray(getattr(written, key)), getattr(again, key))
    assert loaded_info == info
    assert (info.env, info.kind, info.seed, info.size, info.agent) == (ENV, "medium", 0, SIZE // 2, "sac")
    assert info.agent_config["hidden_sizes"] == [64, 64] and info.agent_config["total_steps"] == 10_000
    assert info.rlx_version and info.versions["jax"] == jax.__version__
    assert info.expert_steps == 10_000 and info.policy_mode == "stochastic"
    with pytest.raises(OutputDirError, match="not empty"):
        C.collect_dataset(ref, "medium", 10, out=out, progress=False)


# ---------------------------------------------------------------------------------------------
# rollout layout on a small env with known dynamics
# ---------------------------------------------------------------------------------------------
@struct.dataclass
class LineState(environment.EnvState):
    x: jax.Array


@struct.dataclass
class LineParams(environment.EnvParams):
    max_steps_in_episode: int = 6


class Line(environment.Environment):
    """x moves by the action; terminates beyond x = 1.5, truncates after 6 steps; obs (x, t)."""

    @property
    def default_params(self):
        return LineParams()

    def step_env(self, key, state, action, params):
        x = state.x + action[0]
        state = LineState(time=state.time + 1, x=x)
        return self.get_obs(state), state, x, x > 1.5, {}

    def reset_env(self, key, params):
        state = LineState(time=0, x=jnp.float32(0.0))
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        return jnp.stack([state.x, jnp.float32(state.time)]).astype(jnp.float32)

    def action_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    def observation_space(self, params):
        return spaces.Box(-10.0, 10.0, (2,), jnp.float32)


def test_rollout_keeps_terminals_timeouts_and_true_last_observations():
    env = Line()
    size, num_envs, length = 50, 3, 17
    arrays = {
        "observations": np.zeros((size, 2), np.float32), "actions": np.zeros((size, 1), np.float32),
        "rewards": np.zeros(size, np.float32), "next_observations": np.zeros((size, 2), np.float32),
        "terminals": np.zeros(size, bool), "timeouts": np.zeros(size, bool),
    }
    uniform = C._actor_policy(None, 1, None, False)
    C.rollout_into(arrays, 0, size, env, env.default_params, lambda p: uniform, None, jax.random.PRNGKey(0), num_envs)
    data = ds.validate(ds.Dataset(**arrays))
    obs, nxt = data.observations, data.next_observations
    np.testing.assert_allclose(data.rewards, nxt[:, 0])
    assert data.terminals.any() and data.timeouts.any()
    assert not (data.terminals & data.timeouts).any()
    assert (nxt[data.terminals, 0] > 1.5).all()  # the terminal state itself, not the reset one
    stream_ends = {min((e + 1) * length, size) - 1 for e in range(num_envs)}
    for i in range(size):
        end = data.terminals[i] or data.timeouts[i]
        if i in stream_ends:
            assert end, f"the stream ending at {i} must end an episode"
            continue
        if not end:
            np.testing.assert_array_equal(nxt[i], obs[i + 1])
        else:
            np.testing.assert_array_equal(obs[i + 1], [0.0, 0.0])  # the next row starts a new episode
            if data.timeouts[i]:
                assert nxt[i, 1] == 6 and nxt[i, 0] <= 1.5  # cut by the time limit
    starts = [0] + [i + 1 for i in range(size - 1) if data.terminals[i] or data.timeouts[i]]
    np.testing.assert_array_equal(obs[starts], 0.0 * obs[starts])  # every episode starts at the reset obs
    for e in range(num_envs):
        np.testing.assert_array_equal(obs[e * length], [0.0, 0.0])  # each env's stream is contiguous


# ---------------------------------------------------------------------------------------------
# checks before anything is compiled; the command line
# ---------------------------------------------------------------------------------------------
def test_bad_requests_are_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset kind 'good'; allowed: random, medium, medium-replay"):
        C.collect(ENV, "good", 100)
    with pytest.raises(ValueError, match="size must be a positive"):
        C.collect(ENV, "random", 0)
    with pytest.raises(ConfigError, match="normalize_observations"):
        C.collect(ENV, "random", 10, config={"normalize_observations": True})
    with pytest.raises(ConfigError, match="expert_steps"):
        C.collect(ENV, "random", 10, config={"total_steps": 5})
    with pytest.raises(ConfigError, match="actor_lr"):
        C.collect(ENV, "random", 10, config={"actor_lr": -1.0})
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(OutputDirError, match="not empty"):
        C.collect(ENV, "random", 10, tmp_path / "full")


@pytest.mark.timeout(400)
def test_cli_collect_and_info(tmp_path, capsys):
    from rlx.cli import main

    out = tmp_path / "pendulum"
    argv = [
        "dataset", "collect", "--env", ENV, "--kind", "random,medium-replay", "--size", "400",
        "--expert-steps", "1100", "--learning-starts", "1000", "--eval-every", "50", "--hidden-sizes", "8",
        "--batch-size", "32", "--reference-episodes", "2", "--collect-envs", "2", "--seed", "3",
        "--out", str(out), "--no-progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "random" in printed and "medium-replay" in printed
    random, info = ds.load(out / "random")
    assert random.size == 400 and info.seed == 3 and info.expert_steps == 1100
    history, hinfo = ds.load(out / "medium-replay")
    assert history.size == hinfo.medium_step and 1000 < hinfo.medium_step <= 1100
    # The metadata reproduces the expert run: its config and seed give the same evaluations.
    from rlx import envs
    from rlx.agents import sac
    from rlx.run import make_train, seed_keys

    config = sac.SACConfig.from_dict(info.agent_config)
    env, params = envs.make(info.env, **info.env_kwargs)
    rerun = jax.jit(make_train(sac, config, env, params))(seed_keys(info.seed, 1)[0])
    np.testing.assert_allclose(np.asarray(rerun.metrics["eval/return_mean"]), info.extra["eval_returns"], rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(rerun.metrics["step"]), info.extra["eval_steps"])
    assert main(argv) == 2  # the folders are full now
    assert "not empty" in capsys.readouterr().err
    assert main(["dataset", "info", str(out / "random")]) == 0
    assert "random dataset of gymnax/Pendulum-v1" in capsys.readouterr().out
    assert main(["dataset", "collect", "--kind", "expert,bad", "--out", str(tmp_path / "x")]) == 2
    assert "unknown dataset kind 'bad'" in capsys.readouterr().err
