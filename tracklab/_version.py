"""The package's version, importable without the SDK that ``import tracklab`` loads."""

__version__ = "0.1.0"
