"""Graph + memory plan -> C sources (per-backend op lowering, Jinja2 templates)."""
