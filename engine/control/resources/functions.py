"""Functions: `/v1/Services/{ZS}/Functions` (their code lives in Function Versions)."""

from engine.control.resources.entries import make_routes

routes = make_routes("function")
