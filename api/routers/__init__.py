"""One router per concern: content, runs, artists, accounts, files."""
