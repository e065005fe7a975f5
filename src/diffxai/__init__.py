"""diffxai: explain diffusion models timestep by timestep."""

__version__ = "0.1.0"
