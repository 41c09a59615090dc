"""Messages between lgql's processes over Redis (news only: Postgres decides)."""
