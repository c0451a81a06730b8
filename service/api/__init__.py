"""HTTP routers, request/response schemas and the error handler."""
