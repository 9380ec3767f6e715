"""Pure domain code: no Flask, SQLAlchemy or Redis imports."""
