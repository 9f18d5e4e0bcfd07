"""``python -m ccaug``: the same command line as ``ccaug``, for launchers that start a module.

``accelerate launch -m ccaug train-generator ...`` and ``torchrun -m ccaug ...`` need it.
"""

from ccaug.cli import app

app(prog_name="ccaug")
