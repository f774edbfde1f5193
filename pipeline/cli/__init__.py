"""The ``cxr`` command line: argument parsing, the error-kind to exit-code mapping, progress bars (only here).

May use every product subpackage, and ``pipeline.dev`` (lazily, for ``cxr stack|synth|demo|ui``).
"""

from pipeline.cli.commands import main

__all__ = ["main"]
