"""Reviewer web pages: server-rendered templates with a little JavaScript (no front-end library)."""
