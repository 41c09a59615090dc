"""lgql dev and the project itself: hot reload, start-up, graphs, config, layers, README."""
