"""``python -m iscore.builtins``: rebuild the built-ins' manifest after editing them."""

from iscore.builtins.catalog import main

main()
