"""The persistent compilation cache: where it lives, and that a second identical run hits it."""

from __future__ import annotations

import json

import jax
import pytest

from rlx.cli import main
from rlx.run import compile_cache

TINY = [
    "--env", "rlx/ProbeOneStep-v0", "--total-steps", "300", "--learning-starts", "100", "--eval-every", "100",
    "--eval-episodes", "2", "--batch-size", "8", "--hidden-sizes", "8", "--no-progress",
]


@pytest.fixture
def restore_jax_cache_config():
    """Leave jax's cache settings as they were for the rest of the test session."""
    from jax.experimental.compilation_cache import compilation_cache

    names = [
        "jax_enable_compilation_cache", "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes", "jax_compilation_cache_max_size",
    ]
    saved = {n: getattr(jax.config, n) for n in names}
    yield
    for n, v in saved.items():
        jax.config.update(n, v)
    compilation_cache.reset_cache()


def test_cache_folder_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("RLX_COMPILE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.resolve_cache_dir() == tmp_path / "xdg" / "rlx" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compile_cache.resolve_cache_dir() == tmp_path / "home" / ".cache" / "rlx" / "jax"
    monkeypatch.setenv("RLX_COMPILE_CACHE", str(tmp_path / "env"))
    assert compile_cache.resolve_cache_dir() == tmp_path / "env"
    assert compile_cache.resolve_cache_dir(tmp_path / "flag") == tmp_path / "flag"  # the flag wins
    assert compile_cache.resolve_cache_dir(tmp_path / "flag", disabled=True) is None
    for off in ("0", "off", "OFF", "false", "none", ""):
        monkeypatch.setenv("RLX_COMPILE_CACHE", off)
        assert compile_cache.resolve_cache_dir() is None, off


@pytest.mark.timeout(120)
def test_enable_disable_and_second_compile_hits(tmp_path, restore_jax_cache_config):
    import jax.numpy as jnp

    folder = compile_cache.enable(tmp_path / "cache", min_compile_seconds=0.0)
    assert compile_cache.active_dir() == folder and folder.is_dir()

    def build():  # a fresh function each time: no in-memory cache can answer
        def program(x):
            return jax.lax.scan(lambda c, _: (jnp.tanh(c @ c.T) + c, None), x, None, 8)[0].sum()

        return jax.jit(program)

    x = jnp.ones((8, 8))
    with compile_cache.count_cache_events() as first:
        build().lower(x).compile()
    with compile_cache.count_cache_events() as second:
        build().lower(x).compile()
    assert (first.requests, first.hits) == (1, 0)
    assert (second.requests, second.hits) == (1, 1)
    assert any(p.name.startswith("jit_program") for p in folder.iterdir())

    compile_cache.disable()
    assert compile_cache.active_dir() is None
    with compile_cache.count_cache_events() as off:
        build().lower(x).compile()
    assert off.hits == 0


@pytest.mark.timeout(300)
def test_second_identical_cli_run_loads_its_programs(tmp_path, restore_jax_cache_config, capsys):
    cache = tmp_path / "cache"
    args = ["train", "sac", *TINY, "--compile-cache", str(cache)]
    with compile_cache.count_cache_events() as first:
        assert main([*args, "--out", str(tmp_path / "a")]) == 0
    entries = {p.name for p in cache.iterdir() if p.name.endswith("-cache")}
    assert any("jit_blocks" in e for e in entries), entries  # the training chunk was written
    with compile_cache.count_cache_events() as second:
        assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert first.hits == 0 and first.requests >= 1
    assert second.hits >= 1, second  # at least the training chunk came from the cache
    info = json.loads((tmp_path / "b" / "config.json").read_text())
    assert info["compile_cache"] == str(cache)
    # What the run folder says about itself: versions, device, config, command line.
    assert {"rlx", "jax", "jaxlib", "flax", "optax", "gymnax", "python"} <= set(info["versions"])
    assert info["versions"]["jax"] == jax.__version__
    assert info["device"]["device_kind"] and info["device"]["device_count"] == jax.device_count()
    assert info["config"]["hidden_sizes"] == [8] and info["config"]["total_steps"] == 300
    assert info["command"]
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["compile_seconds"] >= 0


@pytest.mark.timeout(60)
def test_cli_cache_flags(tmp_path, restore_jax_cache_config, capsys):
    assert main(["train", "sac", *TINY, "--compile-cache", str(tmp_path / "c"), "--no-compile-cache",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--compile-cache and --no-compile-cache" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()

    import argparse

    off = argparse.Namespace(compile_cache=None, no_compile_cache=True)
    assert compile_cache.configure_from_args(off) is None
    assert compile_cache.active_dir() is None
    on = argparse.Namespace(compile_cache=str(tmp_path / "d"), no_compile_cache=False)
    assert compile_cache.configure_from_args(on) == tmp_path / "d"
    assert compile_cache.active_dir() == tmp_path / "d"
