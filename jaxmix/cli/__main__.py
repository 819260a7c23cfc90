"""``python -m jaxmix.cli``."""
from .main import main

raise SystemExit(main())
