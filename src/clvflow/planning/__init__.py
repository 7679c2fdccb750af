"""Planning: from segment members to the messages a run will try to send, and why not others."""
