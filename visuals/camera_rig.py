"""The camera: an orbit around the plane (arrows, Q / E), or the editor camera on screen."""

from __future__ import annotations

from typing import Any

import numpy as np

# Aim left of the plane's centre so the plane sits right of the panel.
TARGET = np.array([-1.6, 1.9, 1.0])


class CameraRig:
    """Tilt, yaw and distance of the camera; headless runs place it by hand, on screen the
    editor camera (mouse) follows the same keys."""

    def __init__(self, headless: bool) -> None:
        from ursina import EditorCamera, camera

        self.orbit_deg = np.array([32.0, -25.0])  # tilt, yaw
        self.distance = 25.0
        self.editor: Any = None
        if headless:
            self._place()
        else:
            self.editor = EditorCamera(rotation=(25, -30, 0))
            camera.z = -self.distance

    def _place(self) -> None:
        from ursina import camera

        tilt, yaw = np.radians(self.orbit_deg)
        d = self.distance
        offset = d * np.array(
            [np.cos(tilt) * np.sin(-yaw), np.sin(tilt), -np.cos(tilt) * np.cos(yaw)]
        )
        camera.position = tuple(TARGET + offset)
        camera.look_at(tuple(TARGET))

    def orbit(self, d_tilt: float, d_yaw: float) -> None:
        self.orbit_deg += (d_tilt, d_yaw)
        self.orbit_deg[0] = float(np.clip(self.orbit_deg[0], 5.0, 85.0))
        if self.editor is not None:
            self.editor.rotation = (self.orbit_deg[0], self.orbit_deg[1], 0)
        else:
            self._place()

    def zoom(self, factor: float) -> None:
        self.distance = float(np.clip(self.distance * factor, 4.0, 60.0))
        if self.editor is not None:
            from ursina import camera

            camera.z = -self.distance
        else:
            self._place()
