"""Clips: decode, sample frames, track faces, choose best shots. No database, no HTTP, no model."""
