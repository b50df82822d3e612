"""``python -m auditlog``: the same command line as the ``auditlog`` script."""

from auditlog.cli.app import main

if __name__ == "__main__":
    main()
