"""What `accelerate launch` decided (engine, world size, offload, FSDP flags) and the process groups memfit joins."""
