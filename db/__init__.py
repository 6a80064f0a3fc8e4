"""The hwnas database: SQLAlchemy 2.0 models, sessions and queries."""
