"""WSGI entry point: `gunicorn wsgi:app` (or `orders-service serve`)."""

from app import create_app

app = create_app()
