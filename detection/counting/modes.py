"""The counting engine's modes, in a module of their own: the pure calibration code checks a stored calibration's
mode against them without importing the engine (which imports it)."""

ENGINE_MODES = ("auto", "detect", "density")
