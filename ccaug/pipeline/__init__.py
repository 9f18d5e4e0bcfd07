"""Pipelines that compose the model pieces: the generator's data, training loop, sampling and synthesis.

Import the modules themselves (``ccaug.pipeline.data``, ``ccaug.pipeline.text_embedding``); nothing is
imported here, so that importing one pipeline does not load the others.
"""
