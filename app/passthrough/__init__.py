"""Config-driven pass-through routes: the lean request path (`handler`), route matching,
proxying, transforms, validation and their OpenAPI document."""
