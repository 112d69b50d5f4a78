"""The ``hiem`` command."""
