"""Fault injection: real redis-server and server processes, killed with SIGKILL and restarted by the tests."""
