"""The ``audiotok`` command: one entry point whose subcommands live with their packages (`audiotok.cli`)."""
