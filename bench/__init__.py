"""`make bench`: load the proxy with concurrent clients against the fake upstream; print a table.

Not a test: it measures, it does not assert. Run `python -m bench --help` for the options.
"""
