"""Known-value tests of the shared pieces: distributions, replay buffer, config."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.buffers import add_batch, init_buffer, sample
from rlx.core.config import ConfigError, TrainConfig
from rlx.core.distributions import tanh_gaussian_log_prob, tanh_log_det_jacobian

pytestmark = pytest.mark.timeout(120)


# --- tanh-Gaussian (algorithms.md 1.6) ------------------------------------------------------
@pytest.mark.parametrize(
    "u, mean, std, expected",
    [(0.0, 0.0, 1.0, -0.9189385), (1.0, 0.0, 1.0, -0.5513769), (0.5, 0.2, 0.5, -0.1655623)],
)
def test_tanh_gaussian_log_prob_known_values(u, mean, std, expected):
    lp = tanh_gaussian_log_prob(jnp.array([u]), jnp.array([mean]), jnp.log(jnp.array([std])))
    assert float(lp) == pytest.approx(expected, abs=1e-6)


def test_tanh_jacobian_is_stable_where_naive_form_fails():
    u = jnp.float32(20.0)
    naive = jnp.log(1.0 - jnp.tanh(u) ** 2)
    assert not np.isfinite(float(naive))
    assert float(tanh_log_det_jacobian(u)) == pytest.approx(2 * (math.log(2) - 20.0), abs=1e-4)
    # agrees with the naive form where that one is accurate
    x = np.float64(1.0)
    assert float(tanh_log_det_jacobian(jnp.float32(1.0))) == pytest.approx(np.log(1 - np.tanh(x) ** 2), abs=1e-6)


def test_log_prob_sums_over_action_dims():
    u = jnp.array([[0.0, 1.0]])
    lp = tanh_gaussian_log_prob(u, jnp.zeros((1, 2)), jnp.zeros((1, 2)))
    assert lp.shape == (1,)
    assert float(lp[0]) == pytest.approx(-0.9189385 - 0.5513769, abs=1e-6)


# --- replay buffer ---------------------------------------------------------------------------
def test_buffer_wraps_around_and_tracks_size():
    buf = init_buffer({"x": jnp.zeros(2), "r": jnp.float32(0)}, capacity=5)
    for start in (0, 3):  # 3 items, then 3 more: the 6th item overwrites slot 0
        items = {"x": jnp.arange(start, start + 3, dtype=jnp.float32)[:, None] * jnp.ones(2), "r": jnp.arange(start, start + 3, dtype=jnp.float32)}
        buf = add_batch(buf, items)
    assert int(buf.size) == 5 and int(buf.position) == 1
    np.testing.assert_array_equal(np.asarray(buf.data["r"]), [5, 1, 2, 3, 4])
    np.testing.assert_array_equal(np.asarray(buf.data["x"][:, 0]), [5, 1, 2, 3, 4])


def test_buffer_samples_only_written_slots():
    buf = init_buffer(jnp.float32(0), capacity=100)
    buf = add_batch(buf, jnp.arange(1, 8, dtype=jnp.float32))  # 7 items, values 1..7
    draws = jax.jit(sample, static_argnums=2)(buf, jax.random.PRNGKey(0), 4096)
    values = np.asarray(draws)
    assert values.min() >= 1 and values.max() <= 7
    assert set(np.unique(values)) == set(range(1, 8))  # every written slot reachable


def test_buffer_rejects_bad_sizes():
    with pytest.raises(ValueError, match="capacity"):
        init_buffer(jnp.float32(0), capacity=0)
    buf = init_buffer(jnp.float32(0), capacity=3)
    with pytest.raises(ValueError, match="capacity 3"):
        add_batch(buf, jnp.zeros(4))


# --- config ----------------------------------------------------------------------------------
def test_config_static_fields_are_aux_and_tunables_are_leaves():
    from rlx.agents.sac import SACConfig

    cfg = SACConfig()
    leaves = jax.tree.leaves(cfg)
    assert len(leaves) == len(SACConfig.tunable_names()) > 0
    assert "hidden_sizes" in SACConfig.static_names() and "critic_lr" in SACConfig.tunable_names()


def test_config_override_coerces_strings_and_names_the_field():
    cfg = TrainConfig().override(total_steps="1e4", normalize_observations="true")
    assert cfg.total_steps == 10_000 and cfg.normalize_observations is True
    with pytest.raises(ConfigError, match="total_steps=0 is out of range"):
        TrainConfig().override(total_steps=0)
    with pytest.raises(ConfigError, match="unknown field.*bogus"):
        TrainConfig().override(bogus=1)
    with pytest.raises(ConfigError, match="cannot read 'abc' as int"):
        TrainConfig().override(total_steps="abc")


def test_config_roundtrips_through_dict():
    from rlx.agents.sac import SACConfig

    cfg = SACConfig().override(hidden_sizes="64,64", critic_lr=1e-3)
    again = SACConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.hidden_sizes == (64, 64)


def test_buffer_refuses_items_of_another_shape_when_traced():
    """A scatter would broadcast a (n, 1) leaf into (n, 3) slots without a word."""
    buffer = init_buffer({"obs": jnp.zeros(3), "r": jnp.zeros(())}, 8)
    add = jax.jit(add_batch)
    assert int(add(buffer, {"obs": jnp.ones((2, 3)), "r": jnp.ones(2)}).size) == 2
    with pytest.raises(AssertionError):
        add(buffer, {"obs": jnp.ones((2, 1)), "r": jnp.ones(2)})
    with pytest.raises(AssertionError):
        add(buffer, {"obs": jnp.ones((2, 3)), "r": jnp.ones(3)})  # leading axes differ
    with pytest.raises(AssertionError):
        add(buffer, {"obs": jnp.ones((2, 3))})  # a field missing
