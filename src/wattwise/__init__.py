"""wattwise: measure, attribute and reduce the energy and carbon of software and compute jobs."""

__version__ = "0.1.0"
