"""The backrooms engine: runs conversations between language models and emits events.

It knows nothing about any surface (terminal, Discord, Slack, web); surfaces live in `bot/`.
"""
