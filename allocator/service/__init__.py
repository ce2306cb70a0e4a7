"""The gRPC edge: validate, call the domain, map results and errors to messages and status codes."""
