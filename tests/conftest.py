import os

# Headless plotting in tests; set before matplotlib is imported anywhere.
os.environ.setdefault("MPLBACKEND", "Agg")
# The command line turns jax's persistent compilation cache on by default (~/.cache/rlx/jax);
# tests that run it in-process keep it off, and tests/test_compile_cache.py uses its own folder.
os.environ.setdefault("RLX_COMPILE_CACHE", "off")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def eight_devices(tmp_path_factory):
    """The folder of the 8-device child (tests/_eight_devices.py), run once per test process."""
    from _eight_devices import launch

    return launch(tmp_path_factory.mktemp("eight_devices"))


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """--dist loadgroup: tests sharing an expensive fixture go to one worker (tests/_xdist_groups.py)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from _xdist_groups import FixtureGroupScheduling

    return FixtureGroupScheduling(config, log)


@pytest.fixture
def saved_figures(monkeypatch):
    """The figures the plotting code saves, kept for inspection."""
    import matplotlib.figure

    figures = []
    original = matplotlib.figure.Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    return figures
