"""Web login for the browser: the /auth endpoints and their response models."""
