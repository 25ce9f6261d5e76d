"""Assets: `/v1/Services/{ZS}/Assets` (their bytes live in Asset Versions)."""

from engine.control.resources.entries import make_routes

routes = make_routes("asset")
