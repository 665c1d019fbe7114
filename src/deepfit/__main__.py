"""``python -m deepfit`` runs the command-line interface."""

from deepfit.cli import main

raise SystemExit(main())
