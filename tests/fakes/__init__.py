"""Fake upstream servers for tests: real aiohttp servers on 127.0.0.1."""
