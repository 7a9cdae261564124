"""The ``pchw`` subcommands that live in modules of their own (the Glasgow applet pattern).

Each module here has ``HELP`` (one line for ``pchw --help``), ``DESCRIPTION`` (for
``pchw COMMAND --help``), ``add_arguments(parser, common)`` and ``run(args)``; ``common`` holds
the argument groups that commands share (``model_arg``, ``dataset_args``, ``arithmetic_args``).
A module may set ``NAME``, the command's name, where it is no module name (``import``).
``run`` raises :class:`~pchw.errors.PchwError` for anything a user can cause; :func:`pchw.cli.main`
turns it into one line on stderr and a non-zero exit.
"""

import argparse
import importlib

__all__ = ["COMMANDS", "register"]

#: The modules of :mod:`pchw.commands`, in the order ``pchw --help`` lists them.
COMMANDS = ("serve", "faults", "import_onnx")


def register(subparsers, common):
    """Add every command of :data:`COMMANDS` to ``subparsers`` (from ``add_subparsers``)."""
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        parser = subparsers.add_parser(getattr(module, "NAME", name), help=module.HELP,
                                       description=module.DESCRIPTION,
                                       formatter_class=argparse.RawDescriptionHelpFormatter
                                       if "\n\n" in module.DESCRIPTION else
                                       argparse.HelpFormatter)
        module.add_arguments(parser, common)
        parser.set_defaults(func=module.run)
