"""The A2A door: every assistant as an Agent2Agent agent, at `/a2a/{assistant_id}`."""
