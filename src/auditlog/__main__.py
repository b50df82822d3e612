"""``python -m auditlog``: the same command line as the ``auditlog`` script."""

from auditlog.cli.app import main

main()
