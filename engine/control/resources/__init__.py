"""One module per resource of the Serverless API v1; each exports `routes`, one handler per verb."""
