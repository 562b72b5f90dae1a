"""Job requests shared across partnerships: partner jobs shown here, partner offers on our own jobs."""
