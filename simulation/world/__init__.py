"""Seeded, vectorised multi-bank synthetic transactions in the IBM AML CSV schema."""

from simulation.world.generate import generate_world
from simulation.world.presets import (
    BENIGN_KINDS,
    CHUNK_DAYS,
    CURRENCIES,
    EXTRA_HEADER,
    FORMATS,
    IBM_HEADER,
    MANIFEST_FORMAT,
    PRESETS,
    TYPOLOGIES,
    UNITS_PER_USD,
)

__all__ = [
    "BENIGN_KINDS",
    "CHUNK_DAYS",
    "CURRENCIES",
    "EXTRA_HEADER",
    "FORMATS",
    "IBM_HEADER",
    "MANIFEST_FORMAT",
    "PRESETS",
    "TYPOLOGIES",
    "UNITS_PER_USD",
    "generate_world",
]
