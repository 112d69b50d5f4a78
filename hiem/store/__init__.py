"""Persistence: SQLAlchemy models, queries and Alembic migrations. No protocol code lives here."""
