"""closedemo against bare Twisted, Node and aiohttp: python -m bench."""
