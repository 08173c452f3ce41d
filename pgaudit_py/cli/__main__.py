"""`python -m pgaudit_py.cli`, as the `pgaudit` command."""

from pgaudit_py.cli import main

main()
