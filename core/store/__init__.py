"""The store: the SQLite database, its migrations, where it may live, how it keeps time."""
