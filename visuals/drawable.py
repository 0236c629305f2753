"""What every drawn layer does the same way: show/hide and teardown act on its root entity."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_positive(name: str, value: float) -> float:
    """``value`` as a float; ValueError naming ``name`` unless it is finite and > 0."""
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


class Drawable:
    """A layer drawn under one root ``entity`` (an Ursina Entity)."""

    entity: Any

    def set_visible(self, visible: bool) -> None:
        if visible:
            self.entity.show()
        else:
            self.entity.hide()

    def destroy(self) -> None:
        """Remove the layer from the scene, then drop what it held (``_forget``)."""
        from ursina import destroy

        destroy(self.entity)
        self._forget()

    def _forget(self) -> None:
        """Release references to drawn objects after ``destroy``; layers override it."""
