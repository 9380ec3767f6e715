"""`orders-service worker`: the subscription delivery process (docs/events.md).

An entry point beside the HTTP faces: it drives `app.services.delivery` in a loop and owns
the one piece of outgoing I/O (`http.py`). Several may run against PostgreSQL.
"""
