"""``python -m komoju``: see :mod:`komoju.cli`."""

from komoju.cli import main

raise SystemExit(main())
