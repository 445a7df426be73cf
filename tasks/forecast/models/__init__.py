"""Forecasters, one module per family, all behind the `Forecaster` interface."""

from tasks.forecast.models.base import FitContext, Forecaster
from tasks.forecast.models.catalog import MODELS, make_model

__all__ = ["FitContext", "Forecaster", "MODELS", "make_model"]
