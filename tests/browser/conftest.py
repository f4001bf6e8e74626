"""The notebook here is opened by tests/test_browser.py in a real browser, not by nbval."""

collect_ignore = ["charts.ipynb"]
