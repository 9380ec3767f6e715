"""Search: parameter definitions (data), value extraction for indexing, request parsing.

Nothing here issues SQL; `app/store/searching.py` turns a parsed query into statements.
"""
