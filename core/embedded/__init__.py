"""Embedded llama.cpp models: where their files are, the child server, its supervisor."""
