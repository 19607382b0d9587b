"""Push notifications: which webhook URLs are safe to call (policy), and the delivery of
the store's outbox to them (sender)."""
