"""Shared test configuration: only what every test directory needs."""

pytest_plugins = ["pytester"]
