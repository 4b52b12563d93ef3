"""What a person sees: the web pages at `/`, the plots, the offline API docs."""
