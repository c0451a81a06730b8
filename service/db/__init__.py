"""SQLAlchemy 2.0 models, engine, migrations and the content-addressed image store."""
