# The auth function needs nothing beyond the template.
