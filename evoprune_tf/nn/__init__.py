"""Neural-network building blocks: masked layers, filter coupling, surgery and FLOPs counting."""
