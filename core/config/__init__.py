"""The configuration: the TOML file's models and checks, and the secrets from the environment."""
