"""One module per CLI command; each exposes one typed function that Typer registers."""
