"""HTTP edge: thin handlers per area, middleware, OpenAPI documents."""
