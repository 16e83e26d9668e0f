"""The data plane: HTTP/1.1 front end, compiled per-API chains, JWT/JWKS, upstream proxying."""
