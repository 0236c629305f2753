"""Forward-pass counting for the networks, shared by tests, benchmarks and the profiler.

A forward hook on each module adds one to the count of the *current tag*. Code that wants its
calls counted apart (the TD3 update, the training agent's own step) wraps them in
``with counter.tag("training"):``; everything else counts under ``"inference"``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from torch import nn

DEFAULT_TAG = "inference"


class ForwardCounter:
    """Counts forward calls of a set of modules, grouped by tag and by module name."""

    def __init__(self, modules: dict[str, nn.Module] | None = None) -> None:
        self._tag = DEFAULT_TAG
        self._by_tag: Counter[str] = Counter()
        self._by_module: Counter[tuple[str, str]] = Counter()
        self._handles: list = []
        for name, module in (modules or {}).items():
            self.watch(name, module)

    def watch(self, name: str, module: nn.Module) -> None:
        """Count every forward call of ``module`` under ``name``."""

        def hook(_module: nn.Module, _inputs: object, _output: object) -> None:
            self._by_tag[self._tag] += 1
            self._by_module[(self._tag, name)] += 1

        self._handles.append(module.register_forward_hook(hook))

    def swap_tag(self, name: str) -> str:
        """Make ``name`` the current tag and return the previous one, for the caller to put
        back: the allocation-free form of ``tag`` for per-frame stages."""
        previous, self._tag = self._tag, name
        return previous

    @contextmanager
    def tag(self, name: str) -> Iterator[None]:
        """Count the forward calls made inside the block under ``name``."""
        previous, self._tag = self._tag, name
        try:
            yield
        finally:
            self._tag = previous

    def count(self, tag: str | None = None, module: str | None = None) -> int:
        """Calls so far: all of them, or those of one tag and/or one module."""
        if module is None:
            if tag is None:
                return sum(self._by_tag.values())
            return self._by_tag[tag]
        return sum(n for (t, m), n in self._by_module.items() if m == module and tag in (None, t))

    def tags(self) -> Iterable[str]:
        return tuple(self._by_tag)

    def reset(self) -> None:
        self._by_tag.clear()
        self._by_module.clear()

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
