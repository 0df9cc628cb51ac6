"""One module per dashboard page: its full-page route, its htmx actions and its live view."""
