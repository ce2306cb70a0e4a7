"""The public-domain traffic allocation service (server side)."""
