"""The ``cxr`` command line: argument parsing, printing, and the live progress line (only here).

Owns: ``commands`` (the parser: ``cxr run``'s flags come from ``pipeline.options``; ``run``, ``synth``, ``stack``,
``validate``, ``demo``, ``ui``; one ``error:`` line and the exit code of ``pipeline.errors.exit_code`` for every
error a user can meet), ``releases`` (``cxr releases list|show|diff`` and ``cxr verify``) and ``progress_bar``.

May use: every product subpackage (it sits on top: nothing in ``pipeline`` imports it), and ``pipeline.dev``
only lazily, inside the functions of ``cxr stack|synth|demo|ui``. Heavy stages are imported inside the command
that needs them, so ``cxr --help`` stays quick.
"""

from pipeline.cli.commands import main

__all__ = ["main"]
