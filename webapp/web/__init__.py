"""What the views share: htmx helpers, URLs, formatting, presentation and sign-in."""
