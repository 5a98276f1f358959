"""`python -m lab DATASET`: the same command as `python -m lab.evaluate DATASET`."""

from lab.evaluate import main

raise SystemExit(main())
