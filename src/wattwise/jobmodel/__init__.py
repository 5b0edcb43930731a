"""wattwise.jobmodel: job power models (startup + work phases), fitted from measurements."""

from wattwise.jobmodel.model import (
    MODEL_SCHEMA,
    JobModel,
    ModelError,
    Phase,
    constant,
    constant_from_phases,
    load_model,
    ml,
    save_model,
)

__all__ = [
    "MODEL_SCHEMA",
    "JobModel",
    "ModelError",
    "Phase",
    "constant",
    "constant_from_phases",
    "load_model",
    "ml",
    "save_model",
]
