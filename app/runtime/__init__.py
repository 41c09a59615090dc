"""Graph execution: graphs from langgraph.json, the run executor, state and stream event
shapes. Where checkpoints and the store live is app.persistence's business."""
