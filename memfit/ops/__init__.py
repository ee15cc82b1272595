"""Numerical building blocks the strategies wrap: plain torch code that knows nothing of stacks or configs.

Layering: ops/ sits below strategies/ and imports nothing of memfit above core/.
"""
