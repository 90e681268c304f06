"""One module per trigger: decode the input, call ``shared``, encode the result."""
