"""Access: parties and their roles, API tokens, and the one policy every door asks (R4, R8)."""
