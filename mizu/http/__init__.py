"""The HTTP front end: the Mizu-compatible API, the JSON API, the web page, metrics."""
