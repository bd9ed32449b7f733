"""Data set definitions: TFDS builders for local data and the catalog specs.

Importing `digits` and `image_folder` registers their TFDS builders
(``digits``, ``digits_multilabel``, ``user_image_folder``).
"""
