// Placeholder: replaced by the live-update client.
