#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    from crowd_monitor.shutdown import WORKER_COMMANDS, exit_on_signals

    if sys.argv[1:2] and sys.argv[1] in WORKER_COMMANDS:
        exit_on_signals()  # until the worker's own handling takes over: a stop while starting up is clean too
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crowd_monitor.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
