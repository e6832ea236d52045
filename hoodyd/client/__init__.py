"""The command line's side of the API: an HTTP client for the daemon's socket (or TCP URL),
the verbs built on it, and what they print."""
