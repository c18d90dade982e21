"""The commands of the ``sparsebridge`` CLI, one module each; :mod:`.common` holds what they share.

Each module exposes ``COMMAND``, a :class:`~sparsebridge.commands.common.Command`: its name, its
help, a function that adds its options to its parser and the function that runs it.
:mod:`sparsebridge.cli` lists them in one table. A command imports heavy libraries (the encoders,
Ray) in the function that runs it, so ``--help`` stays instant.
"""
