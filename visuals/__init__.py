"""visuals: everything that draws (Ursina / Panda3D). Importing it opens no window."""
