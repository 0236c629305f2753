"""Offscreen rendering helpers: an Ursina app without a window, and its screenshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def make_offscreen_app(size: tuple[int, int] = (640, 360), **kwargs: Any) -> Any:
    """An ``Ursina`` app rendering into an offscreen buffer (EGL, no X server needed)."""
    from panda3d.core import load_prc_file_data
    from ursina import Ursina

    # Headless machines have no sound card; without this OpenAL fills the log with errors.
    load_prc_file_data("calf-viz-offscreen", "audio-library-name null")
    app = Ursina(window_type="offscreen", size=size, **kwargs)
    fix_offscreen_ui_lens(size)
    disable_generated_shaders(_ui_root())
    return app


def _ui_root() -> Any:
    from ursina import camera

    return camera.ui


def disable_generated_shaders(root: Any) -> None:
    """Render ``root`` and its children without Panda3D's generated shaders.

    Ursina gives every entity without a shader ``setShaderAuto()``. For text, Mesa's llvmpipe
    rejects the generated program ("created-shader: The profile is not supported"), and the
    failed program then aborts the process at exit (SIGABRT in Panda3D's heap at teardown).
    Text needs no shader: fixed-function rendering draws it the same.
    """
    root.set_shader_off(1)


def fix_offscreen_ui_lens(size: tuple[int, int]) -> None:
    """Ursina sizes the UI lens on the window's 'aspectRatioChanged' event, which an offscreen
    buffer never sends; without this the whole UI layer (text, panels) is invisible."""
    from ursina import camera

    aspect = size[0] / size[1]
    camera.ui_lens.set_film_size(camera.ui_size * 0.5 * aspect, camera.ui_size * 0.5)


def save_screenshot(path: str | Path) -> Path:
    """Write the last rendered frame to a PNG."""
    from ursina import application

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not application.base.win.save_screenshot(str(target)):
        raise RuntimeError(f"could not write screenshot {target}")
    return target
