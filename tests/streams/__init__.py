"""Run and thread streams: storage, the multiplexer, transports."""
