"""One compiled run: a training program laid out over devices, compiled once per chunk length.

:func:`rlx.run.run` (seeds), :func:`rlx.run.run_sweep` (points x seeds) and
:func:`rlx.run.memory.dry_run` (compile only) all train through a :class:`CompiledRun`:

* ``init(inputs)``: the initial state of every run (inputs: the keys, or a sweep's
  (configs, keys)), placed on the layout's devices;
* ``chunk(n, state)``: ``run_blocks(state, n)``, ahead-of-time compiled once per ``n`` (the
  state donated), cached; ``lower_chunk(n, shapes)`` compiles it from shapes alone;
* ``place`` / ``fetch`` / ``unpad``: the layout's (:mod:`rlx.run.mesh`), so a restored state goes
  back where ``init`` puts a fresh one and metrics come back as numpy with one row per run.

With one unbatched run (``batched=False``) the programs are exactly ``jax.jit(train.init)``
and ``jax.jit(lambda rs: train.run_blocks(rs, n))``, the one-shot ``jax.jit(train)``'s parts;
with several they are ``jax.vmap`` of them over the leading runs axis.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

__all__ = ["CompiledRun"]


class CompiledRun:
    """``init`` / ``run_blocks`` of one run (unbatched) laid out as ``layout`` says.

    ``init(inputs) -> state`` and ``run_blocks(state, n) -> (state, metrics)`` describe one run;
    with ``batched`` both are vmapped over a leading runs axis of ``num_runs``. ``place_state``
    tells whether a host-side state (a restored checkpoint) is placed with the layout (batched
    runs, or a data-parallel state with its device axis) or used as it is.
    """

    def __init__(self, init: Callable, run_blocks: Callable, layout, *, batched: bool, place_state: bool | None = None):
        self.layout = layout
        self.batched = batched
        self.place_state = batched if place_state is None else place_state
        self._init = jax.vmap(init) if batched else init
        self._run_blocks = run_blocks
        self._init_jit = layout.jit(self._init)
        self._chunks: dict[int, Any] = {}
        self.compile_seconds = 0.0  # time spent compiling chunks (init compiles on its first call)

    @classmethod
    def of_train(cls, train, layout, num_runs: int, *, data_parallel: bool = False) -> CompiledRun:
        """The runs of ``train`` (a :func:`rlx.run.make_train` or data-parallel train):
        unbatched for one run, ``jax.vmap`` over the runs otherwise."""
        return cls(train.init, train.run_blocks, layout, batched=num_runs > 1, place_state=num_runs > 1 or data_parallel)

    # ---- the state -----------------------------------------------------------------------------
    def init(self, inputs):
        """The initial state: ``inputs`` (leading runs axis when batched) placed, then ``init``."""
        return self._init_jit(self.layout.place(inputs) if self.batched else inputs)

    def restore(self, state):
        """A host-side state (a restored checkpoint) on the devices ``init`` would put it."""
        return self.layout.place(state) if self.place_state else state

    def abstract_state(self, inputs):
        """Shapes and dtypes of ``init(inputs)`` (traced, never run), without padding runs."""
        return jax.eval_shape(jax.jit(self._init), inputs)

    def place(self, tree):
        return self.layout.place(tree)

    def fetch(self, tree):
        return self.layout.fetch(tree)

    def unpad(self, tree):
        return self.layout.unpad(tree)

    def fetch_metrics(self, metrics) -> dict[str, np.ndarray]:
        """A chunk's metrics on the host: every leaf (runs, blocks), padding dropped."""
        metrics = self.layout.fetch(metrics)
        if not self.batched:
            return {k: np.asarray(v)[None] for k, v in metrics.items()}
        return {k: np.asarray(v) for k, v in metrics.items()}

    # ---- the programs --------------------------------------------------------------------------
    def _chunk_jit(self, n: int):
        def blocks(state):
            return self._run_blocks(state, n)

        return self.layout.jit(jax.vmap(blocks) if self.batched else blocks, donate_argnums=0)

    def chunk(self, n: int, state):
        """``run_blocks(·, n)`` compiled ahead of time for ``state``'s shapes (once per ``n``)."""
        if n not in self._chunks:
            t0 = time.perf_counter()
            self._chunks[n] = self._chunk_jit(n).lower(state).compile()
            self.compile_seconds += time.perf_counter() - t0
        return self._chunks[n]

    def abstract_inputs(self, inputs):
        """``inputs`` as shapes, padded and sharded as :meth:`init` places them."""
        if not self.batched:
            return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), inputs)
        layout = self.layout

        def shape(x):
            x = np.asarray(x)
            return jax.ShapeDtypeStruct((layout.padded_runs, *x.shape[1:]), x.dtype, sharding=layout.sharding)

        return jax.tree.map(shape, inputs)

    def lower_init(self, inputs):
        """``init`` compiled for ``inputs``' shapes (nothing runs, nothing is allocated)."""
        return self._init_jit.lower(self.abstract_inputs(inputs)).compile()

    def lower_chunk(self, n: int, inputs):
        """The chunk of ``n`` blocks compiled from shapes alone: the program :meth:`chunk`
        compiles for the state ``init(inputs)`` gives."""
        abstract = self.abstract_inputs(inputs)
        shapes = jax.eval_shape(self._init, abstract)
        sharding = getattr(self.layout, "sharding", None) if self.batched else None
        if sharding is not None:
            shapes = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)
        return self._chunk_jit(n).lower(shapes).compile()
