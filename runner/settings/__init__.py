"""The launcher's options and how their values are read, merged and checked."""
