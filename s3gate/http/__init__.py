"""The HTTP room: routes, middlewares, handlers, streaming in and out."""
