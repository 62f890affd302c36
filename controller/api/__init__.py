"""The controller's HTTP API: `create_app`, authentication and the JSON routes."""
