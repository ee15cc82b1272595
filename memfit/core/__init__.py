"""The hook protocol, the strategy registry and the Stack that composes strategies. Imports nothing above it."""
