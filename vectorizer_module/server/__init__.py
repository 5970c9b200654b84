"""HTTP layer: the Flask app factory, the one error mapping, and the WSGI entry point."""
