"""The one version string: the package, the wheel (pyproject reads it) and report.json."""

__version__ = "0.1.0"
