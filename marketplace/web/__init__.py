"""The web console's shared parts: layout, static files, forms, formatting, error pages and translations.

Each domain keeps its own pages beside its JSON routes (`pages.py` and `templates/<domain>/`) and calls
the same service functions with the same marshmallow schemas, so a rule is written once.
"""
