"""An app that cannot load: importing it fails, as with a missing setting or dependency."""

raise RuntimeError("DATABASE_URL is not set")
