"""The databases under the repositories: SQLite (the default) and PostgreSQL (``DATABASE_URL``)."""
