"""Model packs, detection, quality, alignment and recognition: the face pipeline."""
