"""The JSON API (Django REST framework)."""
