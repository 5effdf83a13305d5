"""``python -m threadkeep.cli``: the same app as the ``threadkeep`` script."""

from threadkeep.cli.main import app

app(prog_name="threadkeep")
