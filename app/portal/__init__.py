"""The developer portal: partner developers' keys, plans, usage and docs, as HTML pages."""
