"""The doctor: connectivity checks with a cause and a fix each, and the gateway probe."""
