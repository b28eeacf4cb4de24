"""pdesurrogate."""
