"""Local stand-ins for the services the jobs talk to, used by the tests and the demo (never in production)."""
