"""The ``threadkeep`` command line (Typer + Rich).

``main.py`` builds the app; each command group lives in its own module and
stays thin: parse the options, call the library, render the result. Errors are
turned into a one-line message and an exit code in one place, ``errors.py``.
"""
