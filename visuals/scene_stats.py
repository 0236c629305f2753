"""Counts read from the Panda3D scene graph: what the renderer will draw this frame."""

from __future__ import annotations

from typing import Any


def count_draw_calls(root: Any) -> int:
    """Geoms under ``root`` that are not hidden: each is one draw call (Panda3D does not merge
    Geoms on its own). Text nodes count as one each."""
    calls = 0
    for path in root.find_all_matches("**/+GeomNode"):
        if not path.is_hidden():
            calls += path.node().get_num_geoms()
    for path in root.find_all_matches("**/+TextNode"):
        if not path.is_hidden():
            calls += 1
    return calls


def count_nodes(root: Any) -> int:
    """All nodes under ``root`` (a leak shows as a count that keeps growing)."""
    return len(root.find_all_matches("**"))
