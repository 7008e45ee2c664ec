"""The launcher's options and how their values are read, merged and checked.

`options` declares every option once (as a `Settings` field); `parsers` turns raw values into
typed ones; `loading` merges defaults, config file, environment and command line; `checks`
validates combinations.
"""
