"""Training layer: the LightningModule, losses, schedulers, callbacks, DDP helpers and the LightningCLI.

Imports from ``core``, ``models``, ``data`` and ``evaluation``; never from ``experiments``,
``benchmark`` or ``cli``.
"""
