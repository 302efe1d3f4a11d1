"""The default steps and template application every system ships with."""

from iscore.builtins.seeding import SeedReport, seed_builtins

__all__ = ["SeedReport", "seed_builtins"]
