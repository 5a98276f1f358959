"""Tests against a deployed proxy: `AIPROXY_URL` (and `AIPROXY_TEST_KEY`) name it.

    AIPROXY_URL=https://aiproxy-dev-mybranch.example.org AIPROXY_TEST_KEY=aip_... \
        .venv/bin/python -m pytest tests/deployed -n 0            # everything (integration)
    ... -m smoke                                                # the short check after production

Without AIPROXY_URL every test here is skipped, with the reason. The `smoke` marker is registered
in pyproject.toml with the others.
"""
