"""Persona: user profiles and segments from raw user data, with deep learning on Spark."""

__version__ = "0.1.0"
