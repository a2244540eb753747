"""SchemaHub: exactly-once crypto trade data from exchange REST APIs into one unified table."""

__version__ = "0.1.0"

__all__ = ["__version__"]
