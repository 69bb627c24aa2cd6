"""Rendering: an inventory's regions into navigator.yml files, one image per Fly app, and the Rails cable settings."""
